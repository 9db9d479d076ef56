//! The memory and table limits of one plugin instance.
//!
//! wasmtime's own `StoreLimits` caps each linear memory separately; an
//! instance with several memories could exceed the configured budget. This
//! limiter sums every memory of the store, and refuses growth past the
//! budget with [`MemoryLimitExceeded`], which traps the call with a message
//! that names the limit.

use wasmtime::ResourceLimiter;

/// Most table elements one instance may have (all tables together).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// A refused memory growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("exceeded its memory limit of {limit} bytes (asked for {requested} bytes in all)")]
pub struct MemoryLimitExceeded {
    /// The limit.
    pub limit: usize,
    /// The total the instance asked for.
    pub requested: usize,
}

/// Counts an instance's memory and table growth against its limits.
#[derive(Debug)]
pub(super) struct InstanceLimiter {
    memory_limit: usize,
    memory_used: usize,
    table_elements: usize,
}

impl InstanceLimiter {
    pub fn new(memory_limit: usize) -> Self {
        InstanceLimiter { memory_limit, memory_used: 0, table_elements: 0 }
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let requested = self.memory_used.saturating_add(desired.saturating_sub(current));
        if requested > self.memory_limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded { limit: self.memory_limit, requested }));
        }
        self.memory_used = requested;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let requested = self.table_elements.saturating_add(desired.saturating_sub(current));
        if requested > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = requested;
        Ok(true)
    }

    fn instances(&self) -> usize {
        // A component instantiates a handful of core modules.
        64
    }

    fn memories(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_are_summed_against_one_budget() {
        let mut limiter = InstanceLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).expect("first memory fits"));
        let err = limiter.memory_growing(0, 60, None).expect_err("a second memory over the sum is refused");
        assert_eq!(
            err.downcast_ref::<MemoryLimitExceeded>(),
            Some(&MemoryLimitExceeded { limit: 100, requested: 120 })
        );
        assert!(limiter.memory_growing(60, 100, None).expect("growing the first to the limit fits"));
        assert!(limiter.memory_growing(100, 101, None).is_err());
    }
}
