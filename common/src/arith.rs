//! The arithmetic of IPCS, in exactly one place. Every server computes with
//! [`Op::apply`]; `loadgen` and the tests check answers with it too.

use core::fmt;

/// An HSMAP operation, as carried in the request's `op` byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    Add = 1,
    Mul = 2,
}

impl Op {
    /// Every operation, in wire order.
    pub const ALL: [Op; 2] = [Op::Add, Op::Mul];

    /// Maps a wire byte to an operation; `None` for anything unknown.
    pub const fn from_u8(byte: u8) -> Option<Op> {
        match byte {
            1 => Some(Op::Add),
            2 => Some(Op::Mul),
            _ => None,
        }
    }

    /// The wire byte of this operation.
    pub const fn to_u8(self) -> u8 {
        self as u8
    }

    /// Computes `a op b` as `u64`. Neither can overflow: the largest sum is
    /// 2^33 - 2 and the largest product (2^32 - 1)^2 < 2^64.
    pub const fn apply(self, a: u32, b: u32) -> u64 {
        match self {
            Op::Add => a as u64 + b as u64,
            Op::Mul => a as u64 * b as u64,
        }
    }

    /// The operator as a person types it.
    pub const fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Mul => '*',
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.symbol())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::from_u8(op.to_u8()), Some(op));
        }
        for byte in (0..=u8::MAX).filter(|b| *b != 1 && *b != 2) {
            assert_eq!(Op::from_u8(byte), None, "byte {byte}");
        }
    }

    #[test]
    fn boundaries() {
        assert_eq!(Op::Add.apply(0, 0), 0);
        assert_eq!(Op::Mul.apply(0, u32::MAX), 0);
        assert_eq!(Op::Add.apply(u32::MAX, u32::MAX), 8_589_934_590);
        assert_eq!(
            Op::Mul.apply(u32::MAX, u32::MAX),
            18_446_744_065_119_617_025
        );
        assert_eq!(Op::Mul.apply(50, 1337), 66_850);
    }
}
