//! Request tags: what a load balancer writes in each request record and a
//! server echoes, so the reply finds its request.
//!
//! ```text
//!  63             32 31                   8+S  8+S-1        8  7          0
//! +----------------+-----------------------+-----------------+------------+
//! |  check (32)    | generation (24-S bits) |  slot (S bits)  | worker (8) |
//! +----------------+-----------------------+-----------------+------------+
//! ```
//!
//! The low 32 bits name the slot in the worker's table of requests in
//! flight, the low bits of the slot's generation and the worker (see
//! [`crate::pending`]); anyone who sees one tag can predict them for the
//! others. The high 32 bits are a **check**: SipHash-2-4, keyed with a
//! 128-bit [`TagKey`] each load balancer draws from the OS random source at
//! start, of the worker, the slot and the slot's *whole* 32-bit generation,
//! cut to 32 bits. So:
//!
//! * a frame forged by someone who has not seen the request's tag names the
//!   right check with probability 2^-32, however many tags they saw before
//!   (SipHash is a pseudo-random function: outputs for other inputs say
//!   nothing about this one);
//! * a tag seen once cannot be replayed after the slot's generation bits in
//!   the tag wrap, because the check covers the whole generation;
//! * the check costs nothing on the reply path: each slot stores its check,
//!   computed once when the slot's generation changes. Only a tag that
//!   misses (stale or forged) costs one hash, to tell the two apart.
//!
//! Why SipHash-2-4 (the `siphasher` crate) rather than an HMAC: the input
//! is 9 bytes and the output 32 bits; SipHash is a PRF designed for exactly
//! such short keyed inputs, about 20 ns here, with no allocation, and a
//! maintained, small, dependency-free implementation.

use siphasher::sip::SipHasher24;

use crate::pending::MAX_CAPACITY;

/// Bits of the tag below the check.
const CHECK_SHIFT: u32 = 32;
const WORKER_BITS: u32 = 8;
/// Bits for slot and generation together.
pub const INDEX_BITS: u32 = 24;

/// A load balancer's secret, drawn once at start and never shown: it keys
/// the tag checks and the hash that places client sources in fairness
/// buckets ([`crate::fairness`]).
#[derive(Clone, PartialEq, Eq)]
pub struct LbSecret([u8; 32]);

impl std::fmt::Debug for LbSecret {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LbSecret(..)")
    }
}

impl LbSecret {
    /// A fresh secret from the OS random source (`getrandom(2)`).
    pub fn random() -> Result<LbSecret, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(LbSecret(bytes))
    }

    /// A fixed secret (tests, simulations).
    pub const fn from_bytes(bytes: [u8; 32]) -> LbSecret {
        LbSecret(bytes)
    }

    /// The key of the tag checks.
    pub fn tag_key(&self) -> TagKey {
        let mut key = [0u8; 16];
        key.copy_from_slice(&self.0[..16]);
        TagKey::from_bytes(&key)
    }

    /// The key of the source-bucket hash.
    pub fn source_key(&self) -> [u8; 16] {
        let mut key = [0u8; 16];
        key.copy_from_slice(&self.0[16..]);
        key
    }
}

/// The secret a load balancer keys its tag checks with.
#[derive(Clone)]
pub struct TagKey(SipHasher24);

impl std::fmt::Debug for TagKey {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TagKey(..)")
    }
}

impl TagKey {
    /// A fresh key from the OS random source (`getrandom(2)`); the LB
    /// derives its keys from one [`LbSecret`] instead.
    #[cfg(test)]
    pub fn random() -> Result<TagKey, getrandom::Error> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key)?;
        Ok(TagKey::from_bytes(&key))
    }

    /// A fixed key (tests, simulations).
    pub fn from_bytes(key: &[u8; 16]) -> TagKey {
        TagKey(SipHasher24::new_with_key(key))
    }

    /// The check of `worker`'s slot `slot` at its full `generation`.
    pub fn check(&self, worker: u8, slot: u32, generation: u32) -> u32 {
        let mut input = [0u8; 9];
        input[0] = worker;
        input[1..5].copy_from_slice(&slot.to_be_bytes());
        input[5..9].copy_from_slice(&generation.to_be_bytes());
        self.0.hash(&input) as u32
    }
}

/// How tags are packed for one table (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagLayout {
    slot_bits: u32,
    worker: u8,
}

/// A tag taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagParts {
    pub worker: u8,
    pub slot: u32,
    /// Only the generation bits the tag has room for.
    pub generation: u32,
    pub check: u32,
}

impl TagLayout {
    /// The layout for a table of `capacity` slots owned by `worker`.
    ///
    /// # Panics
    /// If `capacity` is 0 or above [`MAX_CAPACITY`] (the caller validates).
    pub fn new(capacity: usize, worker: u8) -> TagLayout {
        assert!(
            (1..=MAX_CAPACITY).contains(&capacity),
            "capacity {capacity} out of range"
        );
        let slot_bits = usize::BITS - (capacity - 1).leading_zeros();
        TagLayout { slot_bits, worker }
    }

    pub fn worker(&self) -> u8 {
        self.worker
    }

    pub fn slot_bits(&self) -> u32 {
        self.slot_bits
    }

    pub fn generation_bits(&self) -> u32 {
        INDEX_BITS - self.slot_bits
    }

    fn slot_mask(&self) -> u32 {
        (1u32 << self.slot_bits) - 1
    }

    pub fn generation_mask(&self) -> u32 {
        (1u32 << self.generation_bits()) - 1
    }

    pub fn encode(&self, slot: u32, generation: u32, check: u32) -> u64 {
        debug_assert!(slot <= self.slot_mask());
        let low = ((generation & self.generation_mask()) << (WORKER_BITS + self.slot_bits))
            | ((slot & self.slot_mask()) << WORKER_BITS)
            | u32::from(self.worker);
        (u64::from(check) << CHECK_SHIFT) | u64::from(low)
    }

    pub fn decode(&self, tag: u64) -> TagParts {
        let low = tag as u32;
        TagParts {
            worker: low as u8,
            slot: (low >> WORKER_BITS) & self.slot_mask(),
            generation: (low >> (WORKER_BITS + self.slot_bits)) & self.generation_mask(),
            check: (tag >> CHECK_SHIFT) as u32,
        }
    }

    /// The most recent full generation, not after `current`, whose low bits
    /// are `bits`; `exclude_current` skips `current` itself (a generation
    /// not yet issued, when the slot is free).
    pub fn latest_generation(&self, current: u32, bits: u32, exclude_current: bool) -> u32 {
        let mut back = current.wrapping_sub(bits) & self.generation_mask();
        if back == 0 && exclude_current {
            back = self.generation_mask() + 1;
        }
        current.wrapping_sub(back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_the_worker_is_the_low_byte() {
        let layout = TagLayout::new(65_536, 7);
        assert_eq!((layout.slot_bits(), layout.generation_bits()), (16, 8));
        let tag = layout.encode(0x1234, 0x3ab, 0xdead_beef);
        assert_eq!(tag, 0xdead_beef_ab12_3407);
        assert_eq!(tag.to_be_bytes()[7], 7, "the worker byte is the last");
        let parts = layout.decode(tag);
        assert_eq!(
            parts,
            TagParts {
                worker: 7,
                slot: 0x1234,
                generation: 0xab,
                check: 0xdead_beef
            }
        );
    }

    #[test]
    fn the_check_depends_on_key_worker_slot_and_whole_generation() {
        let key = TagKey::from_bytes(&[1; 16]);
        let other = TagKey::from_bytes(&[2; 16]);
        let c = key.check(0, 5, 9);
        assert_eq!(c, key.check(0, 5, 9), "deterministic");
        assert_ne!(c, other.check(0, 5, 9));
        assert_ne!(c, key.check(1, 5, 9));
        assert_ne!(c, key.check(0, 6, 9));
        // Same low 8 generation bits, different generation.
        assert_ne!(c, key.check(0, 5, 9 + 256));
        assert_eq!(format!("{key:?}"), "TagKey(..)");
    }

    #[test]
    fn random_keys_differ_and_are_never_printed() {
        let a = TagKey::random().unwrap();
        let b = TagKey::random().unwrap();
        assert_ne!(a.check(0, 0, 0), b.check(0, 0, 0));
        let secret = LbSecret::random().unwrap();
        assert_ne!(secret, LbSecret::random().unwrap());
        assert_eq!(format!("{secret:?}"), "LbSecret(..)");
        assert_ne!(secret.tag_key().check(0, 0, 0), a.check(0, 0, 0));
    }

    #[test]
    fn latest_generation_goes_back_to_matching_low_bits() {
        let layout = TagLayout::new(65_536, 0); // 8 generation bits
        assert_eq!(layout.latest_generation(0x305, 0x05, false), 0x305);
        assert_eq!(layout.latest_generation(0x305, 0x05, true), 0x205);
        assert_eq!(layout.latest_generation(0x305, 0x04, false), 0x304);
        assert_eq!(layout.latest_generation(0x305, 0x06, false), 0x206);
        // Before generation 0: wraps, and simply never matches a check.
        assert_eq!(layout.latest_generation(1, 0xff, false), u32::MAX);
    }
}
