//! Choosing the variant (stable or canary) of one request.
//!
//! Invariants: a sticky request's variant is a pure function of the user
//! id, the canary weight and the prompt, so a user keeps the same variant
//! across requests, replicas and restarts; raising the weight only moves
//! users from stable to canary, never back (buckets are fixed, the
//! threshold grows). The raw user id is never stored: logs get
//! [`user_hash`].

use sha2::{Digest, Sha256};

use crate::logstore::Variant;
use crate::spec::rollout::StickyKey;

/// Buckets a user falls into; the weight is a share of them.
const BUCKETS: u64 = 10_000;

/// The routing part of the canary in `rollout.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryRule {
    /// Percent of traffic, 0..=100.
    pub weight: f64,
    /// Prompts the canary applies to; empty means all.
    pub prompts: Vec<String>,
    pub sticky: StickyKey,
}

impl CanaryRule {
    /// Whether the canary applies to `prompt` at all.
    pub fn covers(&self, prompt: &str) -> bool {
        self.prompts.is_empty() || self.prompts.iter().any(|p| p == prompt)
    }

    /// Buckets (out of [`BUCKETS`]) that go to the canary.
    fn threshold(&self) -> u64 {
        let w = if self.weight.is_finite() {
            self.weight.clamp(0.0, 100.0)
        } else {
            0.0
        };
        (w * BUCKETS as f64 / 100.0).round() as u64
    }

    /// The variant of a request for `prompt` from `user` (None: no user id
    /// was sent). `uniform` is a draw in [0, 1) used when there is no
    /// stickiness.
    pub fn choose(&self, prompt: &str, user: Option<&str>, uniform: f64) -> Variant {
        if !self.covers(prompt) {
            return Variant::Stable;
        }
        let t = self.threshold();
        let bucket = match (self.sticky, user) {
            (StickyKey::User, Some(u)) => bucket_of(u),
            _ => ((uniform.clamp(0.0, 1.0)) * BUCKETS as f64) as u64,
        };
        if bucket < t {
            Variant::Canary
        } else {
            Variant::Stable
        }
    }
}

fn digest(user: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"promptgate-user\0");
    h.update(user.as_bytes());
    h.finalize().into()
}

/// The user's fixed bucket in `0..BUCKETS`.
pub fn bucket_of(user: &str) -> u64 {
    let d = digest(user);
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) % BUCKETS
}

/// The hash of a user id stored in logs and feedback: 16 bytes of SHA-256,
/// hex (not reversible; the same id always gives the same hash).
pub fn user_hash(user: &str) -> String {
    hex::encode(&digest(user)[8..24])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(weight: f64) -> CanaryRule {
        CanaryRule {
            weight,
            prompts: Vec::new(),
            sticky: StickyKey::User,
        }
    }

    #[test]
    fn weight_ten_sends_ten_percent_of_distinct_users_and_each_user_sticks() {
        let r = rule(10.0);
        let users: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let canary = users
            .iter()
            .filter(|u| r.choose("p", Some(u), 0.0) == Variant::Canary)
            .count();
        let share = canary as f64 / users.len() as f64;
        assert!((0.09..=0.11).contains(&share), "canary share {share}");
        for u in &users {
            let first = r.choose("p", Some(u), 0.0);
            // The uniform draw must not matter for a sticky user.
            for draw in [0.0, 0.5, 0.999] {
                assert_eq!(r.choose("p", Some(u), draw), first, "{u}");
            }
        }
    }

    #[test]
    fn raising_the_weight_never_moves_a_user_back_to_stable() {
        for i in 0..2_000 {
            let u = format!("u{i}");
            let mut was_canary = false;
            for w in [0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0] {
                let c = rule(w).choose("p", Some(&u), 0.0) == Variant::Canary;
                assert!(!was_canary || c, "{u} left the canary at weight {w}");
                was_canary = c;
            }
            assert!(was_canary, "weight 100 is everyone");
        }
    }

    #[test]
    fn prompt_subset_and_uniform_draws() {
        let mut r = rule(30.0);
        r.prompts = vec!["a".into()];
        assert_eq!(r.choose("b", Some("x"), 0.0), Variant::Stable);
        r.sticky = StickyKey::None;
        assert_eq!(r.choose("a", Some("x"), 0.29), Variant::Canary);
        assert_eq!(r.choose("a", Some("x"), 0.30), Variant::Stable);
        r.sticky = StickyKey::User;
        // No user id: uniform.
        assert_eq!(r.choose("a", None, 0.1), Variant::Canary);
        assert_eq!(r.choose("a", None, 0.9), Variant::Stable);
        assert_eq!(rule(0.0).choose("a", None, 0.0), Variant::Stable);
    }

    #[test]
    fn user_hash_is_stable_and_not_the_id() {
        assert_eq!(user_hash("alice"), user_hash("alice"));
        assert_ne!(user_hash("alice"), user_hash("bob"));
        assert_eq!(user_hash("alice").len(), 32);
        assert!(!user_hash("alice").contains("alice"));
    }
}
