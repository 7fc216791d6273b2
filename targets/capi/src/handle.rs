//! Handles: `temper_model *` and `temper_session *` are not addresses but encoded
//! `(slot, generation)` pairs into two static tables, so a stale handle (double free, use after
//! free) is detected by its generation without touching freed memory, and every use of a
//! handle is counted so a handle in use cannot be freed.
//!
//! Each slot has one atomic state word: the generation (high 32 bits), a LIVE bit and a user
//! count (low bits). A call pins its object with one compare-and-swap (no heap, no lock):
//! models are pinned shared (many threads, and each session pins its model for its whole life),
//! sessions exclusively (a second thread gets [`Error::Busy`]). Freeing swaps LIVE off only
//! when no user holds the slot, else it is refused with [`Error::Busy`].
//!
//! What remains undefined (documented in `temper.h`): a forged pointer, and a stale handle
//! whose slot was reused so often that its generation wrapped around (2^32 reuses of one slot
//! on 64-bit targets, 2^22 on 32-bit) — it then names the new object.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::status::Error;

/// Slots per table (models, sessions).
pub(crate) const SLOTS: usize = 1024;
const IDX_BITS: u32 = 10;
const _: () = assert!(1 << IDX_BITS == SLOTS);
/// Generation bits that fit in a handle beside the slot index.
const GEN_BITS: u32 = if usize::BITS >= 64 { 32 } else { usize::BITS - IDX_BITS };
const LIVE: u64 = 1 << 31;
/// Set while the only user holds the slot exclusively.
const EXCL: u64 = 1 << 30;
const USERS: u64 = EXCL - 1;

/// One table slot.
pub(crate) struct Slot<T> {
    state: AtomicU64,
    obj: AtomicPtr<T>,
}

/// A table of [`SLOTS`] slots.
pub(crate) struct Table<T> {
    slots: [Slot<T>; SLOTS],
    what: &'static str,
}

fn generation(state: u64) -> u64 {
    (state >> 32) & ((1u64 << GEN_BITS) - 1)
}

/// A pinned object: released when dropped. Mutable access only through [`Table::pin_mut`]
/// (the only user).
pub(crate) struct Pin<'t, T> {
    slot: &'t Slot<T>,
    obj: *mut T,
    exclusive: bool,
}

impl<T> std::ops::Deref for Pin<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the pin keeps the object alive (see `Table::pin`); shared access only, or
        // exclusive access while `&mut self` of this only pin is borrowed.
        unsafe { &*self.obj }
    }
}

impl<T> std::ops::DerefMut for Pin<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        assert!(self.exclusive, "mutable access needs an exclusive pin");
        // SAFETY: alive as above; exclusive: this pin is the slot's only user (the CAS from
        // zero users in `pin`), so no other reference to the object exists.
        unsafe { &mut *self.obj }
    }
}

impl<'t, T> Pin<'t, T> {
    /// Keeps the pin until [`Table::release`] (a session pinning its model for its life).
    pub(crate) fn leak(self) -> &'t T {
        debug_assert!(!self.exclusive, "only shared pins are kept");
        let obj = self.obj;
        std::mem::forget(self);
        // SAFETY: the pin is never released by a drop, so the object stays alive until the
        // matching `release`, after which the caller no longer uses this reference.
        unsafe { &*obj }
    }
}

impl<T> Drop for Pin<'_, T> {
    fn drop(&mut self) {
        self.slot.state.fetch_sub(if self.exclusive { 1 | EXCL } else { 1 }, Ordering::AcqRel);
    }
}

impl<T> Table<T> {
    /// An empty table.
    pub(crate) const fn new(what: &'static str) -> Table<T> {
        Table { slots: [const { Slot { state: AtomicU64::new(0), obj: AtomicPtr::new(std::ptr::null_mut()) } }; SLOTS], what }
    }

    /// Stores `obj` in a free slot; returns its handle (never 0).
    pub(crate) fn insert(&self, obj: Box<T>) -> Result<usize, Error> {
        for (i, slot) in self.slots.iter().enumerate() {
            let s = slot.state.load(Ordering::Acquire);
            if s & (LIVE | EXCL | USERS) != 0 {
                continue;
            }
            let gen = match (generation(s) + 1) & ((1u64 << GEN_BITS) - 1) {
                0 => 1, // never handle 0 (NULL)
                g => g,
            };
            if slot.state.compare_exchange(s, (gen << 32) | LIVE | 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                // Held by this insert (user count 1) until the object is stored.
                slot.obj.store(Box::into_raw(obj), Ordering::Release);
                slot.state.fetch_sub(1, Ordering::AcqRel);
                return Ok(((gen as usize) << IDX_BITS) | i);
            }
        }
        Err(Error::TableFull(self.what))
    }

    fn slot(&self, handle: usize) -> Result<(&Slot<T>, u64), Error> {
        if handle == 0 {
            return Err(Error::Null(self.what));
        }
        let slot = self.slots.get(handle & (SLOTS - 1)).ok_or(Error::Stale(self.what))?;
        Ok((slot, (handle >> IDX_BITS) as u64))
    }

    /// Pins the object of `handle`: shared (`exclusive == false`, any number of users) or as
    /// its only user.
    pub(crate) fn pin(&self, handle: usize, exclusive: bool) -> Result<Pin<'_, T>, Error> {
        let (slot, gen) = self.slot(handle)?;
        let mut s = slot.state.load(Ordering::Acquire);
        loop {
            if generation(s) != gen || s & LIVE == 0 {
                return Err(Error::Stale(self.what));
            }
            let users = s & USERS;
            if s & EXCL != 0 || (exclusive && users != 0) || users == USERS {
                return Err(Error::Busy(self.what));
            }
            let new = if exclusive { s + 1 + EXCL } else { s + 1 };
            match slot.state.compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        // The slot is LIVE with our pin counted, so `remove` cannot take and drop the object
        // until the pin is released; the pointer was stored (Release) before the handle existed.
        Ok(Pin { slot, obj: slot.obj.load(Ordering::Acquire), exclusive })
    }

    /// Pins the object of `handle` as its only user, for mutable access.
    pub(crate) fn pin_mut(&self, handle: usize) -> Result<Pin<'_, T>, Error> {
        self.pin(handle, true)
    }

    /// Releases a pin kept by [`Pin::leak`].
    pub(crate) fn release(&self, handle: usize) {
        if let Ok((slot, _)) = self.slot(handle) {
            slot.state.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Removes the object of `handle` and returns it, unless the handle is stale or in use.
    pub(crate) fn remove(&self, handle: usize) -> Result<Box<T>, Error> {
        let (slot, gen) = self.slot(handle)?;
        let s = slot.state.load(Ordering::Acquire);
        if generation(s) != gen || s & LIVE == 0 {
            return Err(Error::Stale(self.what));
        }
        if s & (EXCL | USERS) != 0 {
            return Err(Error::Busy(self.what));
        }
        slot.state.compare_exchange(s, s & !LIVE, Ordering::AcqRel, Ordering::Acquire).map_err(|now| {
            if generation(now) == gen && now & LIVE != 0 {
                Error::Busy(self.what)
            } else {
                Error::Stale(self.what)
            }
        })?;
        let p = slot.obj.swap(std::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: `p` came from `Box::into_raw` in `insert`; the LIVE bit was cleared by this
        // call alone (the CAS), so it is taken back exactly once, with no pin outstanding.
        Ok(unsafe { Box::from_raw(p) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_busy_and_reuse() {
        static T: Table<u32> = Table::new("thing");
        let h = T.insert(Box::new(7)).unwrap();
        assert_ne!(h, 0);
        {
            let p = T.pin(h, true).unwrap();
            assert_eq!(*p, 7);
            assert!(matches!(T.pin(h, true), Err(Error::Busy(_))));
            assert!(matches!(T.pin(h, false), Err(Error::Busy(_))));
            assert!(matches!(T.remove(h), Err(Error::Busy(_))));
        }
        let a = T.pin(h, false).unwrap();
        let b = T.pin(h, false).unwrap();
        assert!(matches!(T.pin(h, true), Err(Error::Busy(_))));
        drop((a, b));
        assert_eq!(*T.remove(h).unwrap(), 7);
        assert!(matches!(T.remove(h), Err(Error::Stale(_))), "double free");
        assert!(matches!(T.pin(h, false), Err(Error::Stale(_))), "use after free");
        let h2 = T.insert(Box::new(8)).unwrap();
        assert_eq!(h2 & (SLOTS - 1), h & (SLOTS - 1), "the slot is reused");
        assert!(matches!(T.pin(h, false), Err(Error::Stale(_))), "with a new generation");
        assert_eq!(*T.pin(h2, false).unwrap(), 8);
        assert!(matches!(T.pin(0, false), Err(Error::Null(_))));
    }
}
