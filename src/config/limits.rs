//! The readers of `[queue]` and `[limits]`: the retry schedule, and the sizes,
//! counts and timeouts that bound what the server takes on.

use super::ConfigError;
use super::reader::{Reader, Section};
use super::sections::{Limits, QueueConfig};
use super::units::{MIB, show_duration, show_size};

/// The largest LMDB map we agree to reserve in a 32-bit address space.
const MAX_STORE_32BIT: u64 = 1536 * MIB;

const QUEUE_KEYS: &[&str] = &["retry_first", "retry_max", "lifetime", "delay_notice"];
const LIMIT_KEYS: &[&str] = &[
    "max_message_size",
    "max_recipients",
    "max_connections",
    "max_connections_per_ip",
    "max_errors",
    "command_timeout",
    "data_timeout",
    "store_size",
    "delivery_workers",
];

pub(super) fn read_queue(r: &Reader<'_>, root: &Section<'_>) -> Result<QueueConfig, ConfigError> {
    let mut queue = QueueConfig::default();
    let Some(item) = root.get("queue") else {
        return Ok(queue);
    };
    let s = r.section(&item, QUEUE_KEYS)?;
    let first = r.set(&s, "retry_first", &mut queue.retry_first, Reader::duration)?;
    let max = r.set(&s, "retry_max", &mut queue.retry_max, Reader::duration)?;
    r.set(&s, "lifetime", &mut queue.lifetime, Reader::duration)?;
    r.set(&s, "delay_notice", &mut queue.delay_notice, Reader::duration)?;
    if queue.retry_first > queue.retry_max {
        let culprit = first.as_ref().or(max.as_ref()).unwrap_or(&item);
        let problem = format!(
            "retry_first ({}) is longer than retry_max ({})",
            show_duration(queue.retry_first),
            show_duration(queue.retry_max)
        );
        return Err(r.at(culprit, problem));
    }
    Ok(queue)
}

pub(super) fn read_limits(r: &Reader<'_>, root: &Section<'_>) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    let Some(item) = root.get("limits") else {
        return Ok(limits);
    };
    let s = r.section(&item, LIMIT_KEYS)?;
    let l = &mut limits;
    let size = r.set(&s, "max_message_size", &mut l.max_message_size, Reader::size)?;
    r.set(&s, "max_recipients", &mut l.max_recipients, Reader::count)?;
    r.set(&s, "max_connections", &mut l.max_connections, Reader::count)?;
    r.set(&s, "max_connections_per_ip", &mut l.max_connections_per_ip, Reader::count)?;
    r.set(&s, "max_errors", &mut l.max_errors, Reader::count)?;
    r.set(&s, "command_timeout", &mut l.command_timeout, Reader::duration)?;
    r.set(&s, "data_timeout", &mut l.data_timeout, Reader::duration)?;
    let store = r.set(&s, "store_size", &mut l.store_size, Reader::size)?;
    r.set(&s, "delivery_workers", &mut l.delivery_workers, Reader::count)?;
    if let Err(problem) = check_store_size(limits.store_size, limits.max_message_size, usize::BITS) {
        return Err(r.at(store.as_ref().or(size.as_ref()).unwrap_or(&item), problem));
    }
    Ok(limits)
}

/// LMDB maps the whole store into the address space, so a 32-bit process cannot
/// reserve much; and a store smaller than one message could never accept it.
fn check_store_size(store: u64, max_message: u64, pointer_bits: u32) -> Result<(), String> {
    if pointer_bits < 64 && store > MAX_STORE_32BIT {
        return Err(format!(
            "store_size {} is too big for this 32-bit system: the store is mapped into memory and at most {} fits",
            show_size(store),
            show_size(MAX_STORE_32BIT)
        ));
    }
    if store <= max_message {
        return Err(format!(
            "store_size ({}) must be larger than max_message_size ({})",
            show_size(store),
            show_size(max_message)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::GIB;

    #[test]
    fn store_size_is_capped_on_32_bit() {
        assert!(check_store_size(GIB, 25 * MIB, 64).is_ok());
        assert!(check_store_size(2 * GIB, 25 * MIB, 64).is_ok());
        assert!(check_store_size(1536 * MIB, 25 * MIB, 32).is_ok());
        let err = check_store_size(2 * GIB, 25 * MIB, 32).expect_err("too big for 32-bit");
        assert!(
            err.contains("store_size 2G is too big for this 32-bit system") && err.contains("1536M"),
            "{err}"
        );
    }
}
