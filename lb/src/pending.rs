//! The table of requests in flight: a fixed slab of slots allocated once,
//! a FIFO free list, and a FIFO deadline list, all threaded through the slab
//! by index, so every operation is O(1) and nothing is allocated after
//! [`PendingTable::new`].
//!
//! # Tags
//!
//! Every request sent to a server carries a 64-bit tag that the server
//! echoes (layout and key: [`crate::tag`]). The tag names the slot, the
//! low bits of the slot's generation and the worker that owns it, plus 32
//! check bits keyed with the load balancer's secret. The worker index sits
//! in the tag's lowest byte, the last tag byte of the backend frame: the
//! kernel's `PACKET_FANOUT` program hashes on it so a reply reaches the
//! worker that sent the request. With `S = ceil(log2(capacity))` slot bits
//! (16 for the default 65,536 slots), `24 - S` generation bits remain;
//! capacity is at most 2^20 so at least 4 do.
//!
//! A slot's generation is bumped whenever the slot is freed, so a late or
//! duplicated reply for a slot that has since been reused carries an old
//! generation and is recognised as stale; a tag whose check is not the one
//! issued for its slot and generation is forged. Each slot keeps the check
//! of its current generation, so a genuine reply costs no hashing.

//! # Deadlines
//!
//! Each request in flight waits on one deadline, in one of [`LANES`]
//! deadline lists ("lanes"). The caller puts every deadline of the same
//! duration in the same lane (the attempt deadlines are rounded up to a
//! few fixed durations, one lane each), so each lane is appended in time
//! order and a FIFO list is its priority queue: insertion, removal and
//! expiry are O(1), and finding the next deadline looks at the lanes'
//! heads only. An insertion out of order is still placed correctly, by a
//! walk back from the lane's tail.
//!
//! # Attempts
//!
//! A request remembers every server it was sent to, when, and which of
//! them answered. After its client is answered it may stay a while
//! ([`Pending::client_answered`]): the answers still owed by servers an
//! earlier attempt went to are then recognised as genuine, give round-trip
//! samples and prove those servers alive.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use ipcs_common::wire::{MacAddr, Request};
use ipcs_common::Op;

use crate::fairness::Bucket;
use crate::tag::{TagKey, TagLayout};

/// The most attempts (first send plus retries) one request may get.
pub const MAX_ATTEMPTS: usize = 8;
/// The most slots one table may have (keeps 4 generation bits in the tag).
pub const MAX_CAPACITY: usize = 1 << 20;
/// Deadline lists a table keeps (see the module docs).
pub const LANES: usize = 48;

const NIL: u32 = u32::MAX;

/// Why a tag names no request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagMiss {
    /// The tag belongs to another worker's table.
    ForeignWorker,
    /// The slot number is beyond this table (never issued by it).
    NoSuchSlot,
    /// The slot is free or has been reused since: a late or duplicated reply
    /// (its check is the one issued for its generation).
    Stale,
    /// The check bits are not the ones issued for this slot and generation:
    /// the tag was made up, not echoed.
    Forged,
}

/// A request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Where the answer goes.
    pub client: SocketAddr,
    pub request: Request,
    /// When the request arrived (for the latency histogram).
    pub started: Instant,
    /// When the request next needs attention (its current attempt times
    /// out, or it is given up).
    pub deadline: Instant,
    /// The client has its answer; the request stays only for the answers
    /// still owed by earlier attempts.
    pub client_answered: bool,
    /// The client's fairness bucket (crate::fairness).
    source: Bucket,
    attempts: u8,
    /// Bit `i`: attempt `i`'s server answered.
    answered: u8,
    sent_to: [MacAddr; MAX_ATTEMPTS],
    /// When each attempt was sent, in microseconds after `started`.
    sent_at: [u32; MAX_ATTEMPTS],
}

impl Pending {
    fn blank(now: Instant) -> Pending {
        Pending {
            client: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            request: Request {
                a: 0,
                b: 0,
                op: Op::Add,
            },
            started: now,
            deadline: now,
            client_answered: false,
            source: Bucket::NONE,
            attempts: 0,
            answered: 0,
            sent_to: [MacAddr::default(); MAX_ATTEMPTS],
            sent_at: [0; MAX_ATTEMPTS],
        }
    }

    /// The client's fairness bucket.
    pub fn source(&self) -> Bucket {
        self.source
    }

    /// Attempts made so far (sends to a server).
    pub fn attempts(&self) -> u32 {
        u32::from(self.attempts)
    }

    /// Every server this request was sent to, in order (repeats possible).
    pub fn sent_to(&self) -> &[MacAddr] {
        &self.sent_to[..usize::from(self.attempts)]
    }

    /// The server of the current attempt.
    pub fn current_server(&self) -> Option<MacAddr> {
        self.sent_to().last().copied()
    }

    pub fn was_sent_to(&self, mac: MacAddr) -> bool {
        self.sent_to().contains(&mac)
    }

    /// The last attempt sent to `mac`, if any.
    pub fn attempt_to(&self, mac: MacAddr) -> Option<usize> {
        self.sent_to().iter().rposition(|m| *m == mac)
    }

    /// How many attempts went to `mac`.
    pub fn attempts_to(&self, mac: MacAddr) -> usize {
        self.sent_to().iter().filter(|m| **m == mac).count()
    }

    /// When attempt `i` was sent.
    pub fn sent_at(&self, i: usize) -> Instant {
        self.started + std::time::Duration::from_micros(u64::from(self.sent_at[i]))
    }

    pub fn is_answered(&self, i: usize) -> bool {
        self.answered & (1 << i) != 0
    }

    /// Attempts whose server has not answered, as (index, server).
    pub fn unanswered(&self) -> impl Iterator<Item = (usize, MacAddr)> + '_ {
        self.sent_to()
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.is_answered(*i))
            .map(|(i, m)| (i, *m))
    }
}

/// A busy slot, as handed out by [`PendingTable::insert`] and
/// [`PendingTable::find`]. Valid until the slot is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle(u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// On the free list.
    Free,
    /// In flight and on a deadline list (its lane).
    Waiting,
    /// In flight but on no list (just inserted, or just expired).
    Detached,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    /// The tag check of `generation` (see [`crate::tag`]).
    check: u32,
    state: SlotState,
    /// The deadline list it is on, when `Waiting`.
    lane: u8,
    prev: u32,
    next: u32,
    entry: Pending,
}

/// Head and tail of an intrusive list through the slab.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };
}

/// The fixed-capacity table of requests in flight.
#[derive(Debug)]
pub struct PendingTable {
    slots: Box<[Slot]>,
    layout: TagLayout,
    key: TagKey,
    free: List,
    lanes: [List; LANES],
    busy: usize,
    /// Requests whose client has no answer yet (the rest linger).
    unanswered_clients: usize,
}

impl PendingTable {
    /// A table of `capacity` slots for `worker` (see [`TagLayout::new`]),
    /// checking its tags with `key`.
    pub fn new(capacity: usize, worker: u8, key: TagKey, now: Instant) -> PendingTable {
        let layout = TagLayout::new(capacity, worker);
        let slots: Box<[Slot]> = (0..capacity)
            .map(|i| Slot {
                generation: 0,
                check: key.check(worker, i as u32, 0),
                state: SlotState::Free,
                lane: 0,
                prev: if i == 0 { NIL } else { i as u32 - 1 },
                next: if i + 1 == capacity { NIL } else { i as u32 + 1 },
                entry: Pending::blank(now),
            })
            .collect();
        PendingTable {
            slots,
            layout,
            key,
            free: List {
                head: 0,
                tail: capacity as u32 - 1,
            },
            lanes: [List::EMPTY; LANES],
            busy: 0,
            unanswered_clients: 0,
        }
    }

    pub fn layout(&self) -> TagLayout {
        self.layout
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.busy
    }

    pub fn is_empty(&self) -> bool {
        self.busy == 0
    }

    /// Requests in flight whose client has no answer yet.
    pub fn unanswered_clients(&self) -> usize {
        self.unanswered_clients
    }

    pub fn is_full(&self) -> bool {
        self.busy == self.slots.len()
    }

    /// Takes a free slot for a new request from `source`'s bucket (whose
    /// in-flight count it holds until removed); `None` when the table is
    /// full. The request is on no deadline until [`dispatch`](Self::dispatch).
    pub fn insert(
        &mut self,
        client: SocketAddr,
        request: Request,
        source: Bucket,
        now: Instant,
    ) -> Option<Handle> {
        let index = self.free.head;
        if index == NIL {
            return None;
        }
        self.unlink(index, ListId::Free);
        let slot = &mut self.slots[index as usize];
        slot.state = SlotState::Detached;
        slot.entry = Pending {
            client,
            request,
            started: now,
            deadline: now,
            client_answered: false,
            source,
            attempts: 0,
            answered: 0,
            sent_to: [MacAddr::default(); MAX_ATTEMPTS],
            sent_at: [0; MAX_ATTEMPTS],
        };
        self.busy += 1;
        self.unanswered_clients += 1;
        Some(Handle(index))
    }

    /// Records an attempt to `server` sent at `now` that needs attention
    /// at `deadline`, waiting in `lane`. Returns `false`, doing nothing,
    /// when the request already had [`MAX_ATTEMPTS`].
    ///
    /// # Panics
    /// If `lane` is not below [`LANES`].
    pub fn dispatch(
        &mut self,
        handle: Handle,
        server: MacAddr,
        now: Instant,
        deadline: Instant,
        lane: usize,
    ) -> bool {
        let entry = &mut self.slots[handle.0 as usize].entry;
        let i = usize::from(entry.attempts);
        if i >= MAX_ATTEMPTS {
            return false;
        }
        let offset = now.saturating_duration_since(entry.started).as_micros();
        entry.sent_to[i] = server;
        entry.sent_at[i] = u32::try_from(offset).unwrap_or(u32::MAX);
        entry.attempts += 1;
        self.rearm(handle, deadline, lane);
        true
    }

    /// Moves the request to `deadline` in `lane` without a new attempt.
    ///
    /// # Panics
    /// If `lane` is not below [`LANES`].
    pub fn rearm(&mut self, handle: Handle, deadline: Instant, lane: usize) {
        assert!(lane < LANES, "lane {lane} out of range");
        let index = handle.0;
        let slot = &self.slots[index as usize];
        debug_assert_ne!(slot.state, SlotState::Free, "rearm of a free slot");
        if slot.state == SlotState::Waiting {
            self.unlink(index, ListId::Lane(slot.lane));
        }
        let slot = &mut self.slots[index as usize];
        slot.entry.deadline = deadline;
        slot.state = SlotState::Waiting;
        slot.lane = lane as u8;
        self.insert_sorted(index, lane as u8);
    }

    /// Notes that attempt `i`'s server answered.
    pub fn mark_answered(&mut self, handle: Handle, i: usize) {
        self.slots[handle.0 as usize].entry.answered |= 1 << i;
    }

    /// Notes that the client has its answer.
    pub fn mark_client_answered(&mut self, handle: Handle) {
        let entry = &mut self.slots[handle.0 as usize].entry;
        if !entry.client_answered {
            entry.client_answered = true;
            self.unanswered_clients -= 1;
        }
    }

    /// The tag that names this request's slot and generation.
    pub fn tag(&self, handle: Handle) -> u64 {
        let slot = &self.slots[handle.0 as usize];
        self.layout.encode(handle.0, slot.generation, slot.check)
    }

    /// Finds the request a reply's tag names. O(1); hashes only for a tag
    /// that misses, to tell a late reply ([`TagMiss::Stale`]) from a made
    /// up one ([`TagMiss::Forged`]).
    pub fn find(&self, tag: u64) -> Result<Handle, TagMiss> {
        let parts = self.layout.decode(tag);
        if parts.worker != self.layout.worker() {
            return Err(TagMiss::ForeignWorker);
        }
        let slot = self
            .slots
            .get(parts.slot as usize)
            .ok_or(TagMiss::NoSuchSlot)?;
        let free = slot.state == SlotState::Free;
        let current = slot.generation & self.layout.generation_mask();
        if !free && current == parts.generation {
            return if slot.check == parts.check {
                Ok(Handle(parts.slot))
            } else {
                Err(TagMiss::Forged)
            };
        }
        // An earlier generation of this slot, if the check says it was
        // ever issued.
        let generation = self
            .layout
            .latest_generation(slot.generation, parts.generation, free);
        if self.key.check(self.layout.worker(), parts.slot, generation) == parts.check {
            Err(TagMiss::Stale)
        } else {
            Err(TagMiss::Forged)
        }
    }

    pub fn get(&self, handle: Handle) -> &Pending {
        debug_assert_ne!(self.slots[handle.0 as usize].state, SlotState::Free);
        &self.slots[handle.0 as usize].entry
    }

    /// Frees the slot (bumping its generation) and returns what it held.
    pub fn remove(&mut self, handle: Handle) -> Pending {
        let index = handle.0;
        let lane = self.slots[index as usize].lane;
        match self.slots[index as usize].state {
            SlotState::Waiting => self.unlink(index, ListId::Lane(lane)),
            SlotState::Detached => {}
            SlotState::Free => panic!("remove of a free slot {index}"),
        }
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.check = self.key.check(self.layout.worker(), index, slot.generation);
        slot.state = SlotState::Free;
        let entry = slot.entry;
        self.push_back(index, ListId::Free);
        self.busy -= 1;
        if !entry.client_answered {
            self.unanswered_clients -= 1;
        }
        entry
    }

    /// Moves a slot to `generation` as if it had been used that often.
    #[cfg(test)]
    pub(crate) fn set_generation(&mut self, handle: Handle, generation: u32) {
        let slot = &mut self.slots[handle.0 as usize];
        slot.generation = generation;
        slot.check = self.key.check(self.layout.worker(), handle.0, generation);
    }

    /// The earliest deadline of any request in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.earliest_lane().map(|(_, deadline)| deadline)
    }

    /// The lane whose head has the earliest deadline, and that deadline.
    fn earliest_lane(&self) -> Option<(u8, Instant)> {
        self.lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.head != NIL)
            .map(|(i, l)| (i as u8, self.slots[l.head as usize].entry.deadline))
            .min_by_key(|(_, deadline)| *deadline)
    }

    /// Takes the request with the earliest deadline, if it is at or before
    /// `now`, off its deadline list. It stays in flight: the caller
    /// [`dispatch`](Self::dispatch)es or [`rearm`](Self::rearm)s it again,
    /// or [`remove`](Self::remove)s it.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Handle> {
        let (lane, deadline) = self.earliest_lane()?;
        if deadline > now {
            return None;
        }
        let head = self.lanes[lane as usize].head;
        self.unlink(head, ListId::Lane(lane));
        self.slots[head as usize].state = SlotState::Detached;
        Some(Handle(head))
    }

    /// Puts `index` in `lane` after the last entry whose deadline is not
    /// later than its own: at the tail when deadlines come in order.
    fn insert_sorted(&mut self, index: u32, lane: u8) {
        let deadline = self.slots[index as usize].entry.deadline;
        let mut after = self.lanes[lane as usize].tail;
        while after != NIL && self.slots[after as usize].entry.deadline > deadline {
            after = self.slots[after as usize].prev;
        }
        self.link_after(index, ListId::Lane(lane), after);
    }

    /// Links `index` into list `id` right after `after` (`NIL`: at the head).
    fn link_after(&mut self, index: u32, id: ListId, after: u32) {
        let next = match after {
            NIL => self.list(id).head,
            a => self.slots[a as usize].next,
        };
        {
            let slot = &mut self.slots[index as usize];
            slot.prev = after;
            slot.next = next;
        }
        match after {
            NIL => self.list(id).head = index,
            a => self.slots[a as usize].next = index,
        }
        match next {
            NIL => self.list(id).tail = index,
            n => self.slots[n as usize].prev = index,
        }
    }

    fn list(&mut self, id: ListId) -> &mut List {
        match id {
            ListId::Free => &mut self.free,
            ListId::Lane(lane) => &mut self.lanes[lane as usize],
        }
    }

    fn unlink(&mut self, index: u32, id: ListId) {
        let (prev, next) = {
            let slot = &self.slots[index as usize];
            (slot.prev, slot.next)
        };
        match prev {
            NIL => self.list(id).head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.list(id).tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
        let slot = &mut self.slots[index as usize];
        slot.prev = NIL;
        slot.next = NIL;
    }

    fn push_back(&mut self, index: u32, id: ListId) {
        let tail = self.list(id).tail;
        self.link_after(index, id, tail);
    }
}

#[derive(Debug, Clone, Copy)]
enum ListId {
    Free,
    Lane(u8),
}

#[cfg(test)]
#[path = "pending_tests.rs"]
mod tests;
