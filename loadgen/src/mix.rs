//! The operation mix (`--mix add=1,mul=1`): which share of the requests asks
//! for each operation. Owns only parsing and the weighted pick; the operands
//! themselves come from [`crate::codec`].

use std::fmt;
use std::str::FromStr;

use ipcs_common::Op;

/// Why a `--mix` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    #[error("empty mix: give e.g. add=1,mul=1")]
    Empty,
    #[error("`{0}` is not NAME=WEIGHT (e.g. add=3)")]
    Syntax(String),
    #[error("unknown operation `{0}` (known: add, mul)")]
    UnknownOp(String),
    #[error("weight `{0}` is not a whole number from 0 to 1000000")]
    Weight(String),
    #[error("operation `{0}` is given twice")]
    Duplicate(String),
    #[error("every weight is 0: at least one operation needs a positive weight")]
    AllZero,
}

/// Integer weights per operation, indexed like [`Op::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; Op::ALL.len()],
}

const MAX_WEIGHT: u32 = 1_000_000;

impl Mix {
    /// Builds a mix from weights; `None` when every weight is zero.
    pub fn new(add: u32, mul: u32) -> Option<Mix> {
        let mix = Mix {
            weights: [add.min(MAX_WEIGHT), mul.min(MAX_WEIGHT)],
        };
        (mix.total() > 0).then_some(mix)
    }

    fn total(&self) -> u64 {
        self.weights.iter().map(|w| u64::from(*w)).sum()
    }

    /// The weight of `op`.
    pub fn weight(&self, op: Op) -> u32 {
        self.weights[index(op)]
    }

    /// Picks an operation from uniformly random bits, in proportion to the
    /// weights.
    pub fn pick(&self, random: u64) -> Op {
        let mut ticket = random % self.total();
        for op in Op::ALL {
            let w = u64::from(self.weight(op));
            if ticket < w {
                return op;
            }
            ticket -= w;
        }
        unreachable!("ticket below the total weight")
    }
}

impl Default for Mix {
    /// Equal shares of every operation.
    fn default() -> Mix {
        Mix { weights: [1, 1] }
    }
}

fn index(op: Op) -> usize {
    match op {
        Op::Add => 0,
        Op::Mul => 1,
    }
}

fn name(op: Op) -> &'static str {
    match op {
        Op::Add => "add",
        Op::Mul => "mul",
    }
}

impl FromStr for Mix {
    type Err = MixError;

    fn from_str(s: &str) -> Result<Mix, MixError> {
        if s.trim().is_empty() {
            return Err(MixError::Empty);
        }
        let mut weights = [0u32; Op::ALL.len()];
        let mut seen = [false; Op::ALL.len()];
        for part in s.split(',') {
            let part = part.trim();
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| MixError::Syntax(part.to_string()))?;
            let key = key.trim().to_ascii_lowercase();
            let op = match key.as_str() {
                "add" | "+" => Op::Add,
                "mul" | "*" => Op::Mul,
                _ => return Err(MixError::UnknownOp(key)),
            };
            let value = value.trim();
            let weight: u32 = value
                .parse()
                .ok()
                .filter(|w| *w <= MAX_WEIGHT)
                .ok_or_else(|| MixError::Weight(value.to_string()))?;
            if std::mem::replace(&mut seen[index(op)], true) {
                return Err(MixError::Duplicate(name(op).to_string()));
            }
            weights[index(op)] = weight;
        }
        let mix = Mix { weights };
        if mix.total() == 0 {
            return Err(MixError::AllZero);
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for op in Op::ALL {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}={}", name(op), self.weight(op))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let mix: Mix = "add=3, mul=1".parse().unwrap();
        assert_eq!(mix.weight(Op::Add), 3);
        assert_eq!(mix.weight(Op::Mul), 1);
        assert_eq!(mix.to_string(), "add=3,mul=1");
        let only_add: Mix = "add=1".parse().unwrap();
        assert_eq!(only_add.weight(Op::Mul), 0);
        assert_eq!("MUL=2".parse::<Mix>().unwrap().weight(Op::Mul), 2);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!("".parse::<Mix>(), Err(MixError::Empty));
        assert_eq!("add".parse::<Mix>(), Err(MixError::Syntax("add".into())));
        assert_eq!(
            "sub=1".parse::<Mix>(),
            Err(MixError::UnknownOp("sub".into()))
        );
        assert_eq!("add=-1".parse::<Mix>(), Err(MixError::Weight("-1".into())));
        assert_eq!("add=x".parse::<Mix>(), Err(MixError::Weight("x".into())));
        assert_eq!(
            "add=1,add=2".parse::<Mix>(),
            Err(MixError::Duplicate("add".into()))
        );
        assert_eq!("add=0,mul=0".parse::<Mix>(), Err(MixError::AllZero));
        assert_eq!(
            "add=99999999".parse::<Mix>(),
            Err(MixError::Weight("99999999".into()))
        );
    }

    #[test]
    fn pick_follows_weights() {
        let mix = Mix::new(3, 1).unwrap();
        let adds = (0..4000u64).filter(|r| mix.pick(*r) == Op::Add).count();
        assert_eq!(adds, 3000);
        let only_mul = Mix::new(0, 5).unwrap();
        assert!((0..100).all(|r| only_mul.pick(r) == Op::Mul));
        assert!(Mix::new(0, 0).is_none());
    }
}
