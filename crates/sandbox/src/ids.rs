//! Id and token generation from a seedable RNG, so a seeded emulator hands out the same ids for
//! the same sequence of requests.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use std::sync::Mutex;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// An RNG for `seed` and a named stream, so independent users of one seed (seeding data, ids,
/// faults, keys) do not perturb each other. `None` draws from the OS.
pub fn rng_for(seed: Option<u64>, stream: u64) -> StdRng {
    match seed {
        Some(s) => StdRng::seed_from_u64(s ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        None => StdRng::from_entropy(),
    }
}

/// Thread-safe id source.
#[derive(Debug)]
pub struct IdGen {
    rng: Mutex<StdRng>,
}

impl IdGen {
    pub fn new(rng: StdRng) -> Self {
        Self { rng: Mutex::new(rng) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-draw; the RNG is still usable.
        let mut g = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Firebase-style 20-character alphanumeric id (contacts, tasks, notes, locations, users).
    pub fn alnum(&self, len: usize) -> String {
        self.with(|r| alnum(r, len))
    }

    /// Lower-case hex of `len` characters (Mongo ObjectIds are 24, OAuth codes 40).
    pub fn hex(&self, len: usize) -> String {
        self.with(|r| hex(r, len))
    }

    /// A version-4 UUID string.
    pub fn uuid(&self) -> String {
        self.with(uuid)
    }

    pub fn bytes32(&self) -> [u8; 32] {
        self.with(|r| {
            let mut b = [0u8; 32];
            r.fill_bytes(&mut b);
            b
        })
    }

    /// A float in [0, 1), for probability draws.
    pub fn unit(&self) -> f64 {
        self.with(|r| r.gen::<f64>())
    }
}

pub fn alnum(r: &mut impl Rng, len: usize) -> String {
    (0..len).map(|_| ALNUM[r.gen_range(0..ALNUM.len())] as char).collect()
}

pub fn hex(r: &mut impl Rng, len: usize) -> String {
    const H: &[u8] = b"0123456789abcdef";
    (0..len).map(|_| H[r.gen_range(0..16)] as char).collect()
}

pub fn uuid(r: &mut impl Rng) -> String {
    let mut b = [0u8; 16];
    r.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_are_deterministic_and_shaped() {
        let a = IdGen::new(rng_for(Some(7), 1));
        let b = IdGen::new(rng_for(Some(7), 1));
        let id = a.alnum(20);
        assert_eq!(id, b.alnum(20));
        assert_eq!(id.len(), 20);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
        let u = a.uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(a.hex(24).len(), 24);
    }
}
