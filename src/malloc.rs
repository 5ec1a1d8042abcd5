//! Settings for the C library's allocator, which librdkafka uses.
//!
//! The sink's own allocations go to jemalloc (see `main.rs`), but librdkafka
//! allocates with the C library's `malloc`, and its broker thread receives
//! every fetch response into freshly allocated buffers. glibc's defaults give
//! memory back to the kernel as soon as enough of a heap's top is free, and
//! map large buffers separately and unmap them when freed, so the next
//! response lands on pages the kernel has to fault in and clear again:
//! profiles of a backlog drain showed about a twentieth of the sink's CPU
//! time there, under the broker thread. Fixed thresholds keep freed memory
//! for reuse; librdkafka's own limits on queued data
//! (`queued.max.messages.kbytes`) bound how much that can be.

/// Makes glibc keep freed memory for reuse (no-op on other C libraries).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // The mmap threshold's ceiling on 64-bit glibc; above it, buffers are
        // mapped and unmapped whatever the setting.
        const MMAP_THRESHOLD: i32 = 32 << 20;
        const TRIM_THRESHOLD: i32 = 256 << 20;
        // SAFETY: mallopt only changes the allocator's tuning parameters; it
        // is called before any thread that allocates through it is started.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}
