//! How loadgen chooses operands so that every reply identifies its request
//! and can be checked.
//!
//! HSMAP carries no request id and a reply carries only `result | server_id`,
//! so the *result* must say which request it answers. Each socket is its own
//! stream of requests numbered `seq = 0, 1, 2, ...`; the low [`TAG_BITS`] (16)
//! bits of `seq` are the request's *tag*, and the operands are chosen so
//! that the low 16 bits of the correct result equal the tag:
//!
//! ```text
//! add: R = check << 16 | tag            check: 17 keyed-hash bits (R < 2^33)
//!      a = random in the range that keeps a, b = R - a within u32
//! mul: b = random odd u32,  a = r << 16 | (tag * b⁻¹ mod 2^16)
//!      a * b ≡ tag (mod 2^16)           r: 16 random bits, nonzero
//! ```
//!
//! All random bits come from a keyed hash of `(run key, socket, seq)`, so
//! the request for any `(socket, seq)` is a pure function: the receiving
//! side recomputes the exact expected answer with [`Request::answer`] (that
//! is, `Op::apply`) without any table shared with the sending side.
//!
//! To classify a reply the receiver takes `tag = result mod 2^16` and looks
//! at the requests of the tracking window with that tag, newest first (one
//! per 65,536 requests sent on the socket, so usually one or two). The reply
//! answers the first whose expected 64-bit answer it equals; if none, it is
//! *wrong*. A wrong value passes only if it equals the answer of one of
//! those few requests: for add the 17 check bits make that about 1 in
//! 131,072 per candidate for an arbitrary wrong value, for mul 1 in 2^47;
//! an off-by-one or wrong-operation result is caught the same way.

use ipcs_common::wire::Request;
use ipcs_common::Op;

use crate::mix::Mix;

/// How many low bits of a result carry the request's tag.
pub const TAG_BITS: u32 = 16;
/// Mask of the tag bits.
pub const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// Values of the add check: `0 ..= 2^17 - 2`, so `R <= 2^33 - 2`, the
/// largest sum of two `u32`.
const ADD_CHECKS: u64 = (1 << 17) - 1;

/// Makes the request for `(socket, seq)` of one run.
#[derive(Debug, Clone, Copy)]
pub struct OperandCodec {
    key: u64,
    mix: Mix,
}

impl OperandCodec {
    /// `key` makes operands differ between runs; any value works.
    pub fn new(key: u64, mix: Mix) -> OperandCodec {
        OperandCodec { key, mix }
    }

    /// The request number `seq` of socket `stream`.
    pub fn request(&self, stream: u32, seq: u64) -> Request {
        let h1 = splitmix64(self.key ^ splitmix64((u64::from(stream) << 48) ^ seq));
        let h2 = splitmix64(h1);
        let h3 = splitmix64(h2);
        let tag = seq & TAG_MASK;
        match self.mix.pick(h3) {
            Op::Add => {
                let result = (h1 % ADD_CHECKS) << TAG_BITS | tag;
                let max = u64::from(u32::MAX);
                let (lo, hi) = (result.saturating_sub(max), result.min(max));
                let a = lo + h2 % (hi - lo + 1);
                Request {
                    a: a as u32,
                    b: (result - a) as u32,
                    op: Op::Add,
                }
            }
            Op::Mul => {
                let b = (h1 as u32) | 1;
                let low = (tag as u32).wrapping_mul(inverse_mod_2_32(b)) & TAG_MASK as u32;
                let high = ((h2 as u32) & !(TAG_MASK as u32)).max(1 << TAG_BITS);
                Request {
                    a: high | low,
                    b,
                    op: Op::Mul,
                }
            }
        }
    }
}

/// The tag a reply's result carries.
pub const fn tag_of(result: u64) -> u64 {
    result & TAG_MASK
}

/// The sequence numbers below `issued` and not older than `window` whose
/// tag is `tag`, newest first.
pub fn candidates(tag: u64, issued: u64, window: u64) -> impl Iterator<Item = u64> {
    let oldest = issued.saturating_sub(window);
    let newest = issued
        .checked_sub(1)
        .and_then(|last| last.checked_sub(last.wrapping_sub(tag) & TAG_MASK));
    std::iter::successors(newest, |s| s.checked_sub(1 << TAG_BITS))
        .take_while(move |s| *s >= oldest)
}

/// The inverse of an odd `x` modulo 2^32 (Newton's iteration: each step
/// doubles the number of correct low bits, starting from 3).
fn inverse_mod_2_32(x: u32) -> u32 {
    let mut inv = x;
    for _ in 0..4 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(x.wrapping_mul(inv)));
    }
    inv
}

/// SplitMix64's finaliser: a fast, well-mixed 64-bit hash.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_carries_the_tag_for_every_op() {
        for mix in [Mix::new(1, 0).unwrap(), Mix::new(0, 1).unwrap()] {
            let codec = OperandCodec::new(42, mix);
            for seq in (0..20_000).chain([TAG_MASK - 1, TAG_MASK, TAG_MASK + 1, 1 << 40]) {
                let req = codec.request(3, seq);
                assert_eq!(tag_of(req.answer()), seq & TAG_MASK, "{req} seq {seq}");
                assert_ne!(req.answer(), 0);
            }
        }
    }

    #[test]
    fn inverse_is_exact() {
        for x in [1u32, 3, 5, 0xffff_ffff, 0x1234_5679, 65_537] {
            assert_eq!(x.wrapping_mul(inverse_mod_2_32(x)), 1, "{x}");
        }
    }

    #[test]
    fn requests_are_deterministic_and_differ_between_keys_and_streams() {
        let codec = OperandCodec::new(7, Mix::default());
        assert_eq!(codec.request(1, 99), codec.request(1, 99));
        let differ = |other: &OperandCodec, stream| {
            (0..100)
                .filter(|s| codec.request(1, *s) != other.request(stream, *s))
                .count()
        };
        assert!(differ(&OperandCodec::new(8, Mix::default()), 1) > 90);
        assert!(differ(&codec, 2) > 90);
    }

    #[test]
    fn mix_is_respected() {
        let codec = OperandCodec::new(1, Mix::new(1, 1).unwrap());
        let adds = (0..10_000)
            .filter(|s| codec.request(0, *s).op == Op::Add)
            .count();
        assert!((4500..5500).contains(&adds), "{adds}");
    }

    /// Whether `value` would be accepted as the answer of some request.
    fn accepted(codec: &OperandCodec, value: u64, issued: u64, window: u64) -> bool {
        candidates(tag_of(value), issued, window).any(|s| codec.request(0, s).answer() == value)
    }

    /// Share of typical wrong results (off by one, wrong operation, zero,
    /// a flipped bit) that pass as correct, with `periods` tag periods in
    /// the window (so up to that many candidates per tag).
    fn false_accept_rate(mix: Mix, periods: u64) -> f64 {
        let codec = OperandCodec::new(5, mix);
        let issued = periods << TAG_BITS;
        let (mut checked, mut passed) = (0u64, 0u64);
        for seq in (0..issued).step_by(3) {
            let req = codec.request(0, seq);
            let good = req.answer();
            assert!(accepted(&codec, good, issued, issued));
            let other_op = match req.op {
                Op::Add => Op::Mul.apply(req.a, req.b),
                Op::Mul => Op::Add.apply(req.a, req.b),
            };
            for bad in [
                good + 1,
                good - 1,
                other_op,
                0,
                good ^ (1 << 20),
                good + (1 << 16),
            ] {
                checked += 1;
                passed += u64::from(accepted(&codec, bad, issued, issued));
            }
        }
        passed as f64 / checked as f64
    }

    #[test]
    fn typical_server_bugs_are_caught() {
        // Add has only 33 result bits: 16 name the request, 17 check it, so
        // about 1 wrong value in 131,072 per candidate slips through.
        let add = Mix::new(1, 0).unwrap();
        assert!(false_accept_rate(add, 1) < 2e-5);
        assert!(false_accept_rate(add, 4) < 6e-5);
        // Mul results have 64 bits: nothing slips through.
        assert_eq!(false_accept_rate(Mix::new(0, 1).unwrap(), 4), 0.0);
    }

    #[test]
    fn candidates_are_newest_first_within_the_window() {
        let all = |tag, issued, window| candidates(tag, issued, window).collect::<Vec<_>>();
        assert_eq!(all(0, 0, 100), Vec::<u64>::new());
        assert_eq!(all(0, 1, 100), [0]);
        assert_eq!(all(5, 5, 100), Vec::<u64>::new());
        assert_eq!(all(4, 5, 100), [4]);
        let p = 1 << TAG_BITS;
        let issued = 3 * p + 10;
        assert_eq!(all(9, issued, u64::MAX), [3 * p + 9, 2 * p + 9, p + 9, 9]);
        assert_eq!(all(11, issued, u64::MAX), [2 * p + 11, p + 11, 11]);
        assert_eq!(all(9, issued, p), [3 * p + 9]);
        assert_eq!(all(TAG_MASK, issued, p + 20), [3 * p - 1, 2 * p - 1]);
        assert_eq!(all(TAG_MASK, issued, p), [3 * p - 1]);
    }
}
