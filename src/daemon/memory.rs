//! Handing memory back while the daemon is idle.
//!
//! The daemon sleeps for hours between scans, so what it holds then is
//! what an operator pays for (`draco bench idle`). Two things stay resident
//! after start-up and after a scan although the idle daemon never touches
//! them again:
//!
//! - freed heap, which glibc's allocator keeps in its arenas until told
//!   otherwise (`malloc_trim(3)`);
//! - the pages of Draco's own executable that the work touched: about
//!   20 MB of its code (migrations, configuration parsing, template
//!   compilation, a scan's detection and change requests) against about
//!   7 MB that idling (lease renewals, health probes) uses. The kernel
//!   keeps a file's pages mapped until memory runs short, and maps up to 16
//!   neighbours of each page touched (`fault_around_bytes`), so they stay
//!   in the resident set, and in a container's working set, for hours.
//!   `madvise(MADV_PAGEOUT)` (Linux 5.4) on the executable's read-only
//!   mappings asks the kernel to reclaim them now, as Android does for
//!   apps in the background; what is used again is read back on demand,
//!   from the page cache if still there (a scan's first milliseconds).
//!   Writable mappings are left alone (their changed pages are anonymous
//!   memory, with no file to go back to), and so are shared libraries
//!   (the kernel skips pages other processes map anyway).
//!
//! Both are advice: a kernel or allocator that does not follow it changes
//! nothing but the figure.

/// Gives freed heap back (glibc only) and asks the kernel to reclaim the
/// executable's read-only pages (Linux only). Safe to call at any time from
/// any thread; errors are ignored (it is advice).
pub fn release_idle_memory() {
    release_freed_heap();
    release_code_pages();
}

fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it
    // takes no pointer and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Advises the kernel to reclaim the executable's read-only mappings;
/// returns how many bytes of mappings it accepted the advice for (0 where
/// `MADV_PAGEOUT` is unknown: Linux before 5.4, another system).
fn release_code_pages() -> usize {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt as _;
        let (Ok(maps), Ok(exe)) = (
            std::fs::read_to_string("/proc/self/maps"),
            std::fs::metadata("/proc/self/exe"),
        ) else {
            return 0;
        };
        let mut advised = 0;
        for (start, len) in read_only_mappings_of(&maps, exe.ino()) {
            // SAFETY: the range is one of this process's own mappings, as
            // /proc/self/maps lists it, read-only and file-backed: advice
            // to reclaim it changes no content (a page used again is read
            // back from the file) and never unmaps it.
            let accepted =
                unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
            if accepted == 0 {
                advised += len;
            }
        }
        advised
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// The `(start, length)` of every mapping in `maps` (the text of
/// `/proc/<pid>/maps`, proc(5)) that is backed by inode `inode` and not
/// writable.
fn read_only_mappings_of(maps: &str, inode: u64) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let _offset = fields.next()?;
            let _device = fields.next()?;
            let mapped: u64 = fields.next()?.parse().ok()?;
            if mapped != inode || inode == 0 || perms.as_bytes().get(1) != Some(&b'-') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            Some((start, end.checked_sub(start)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55a873125000-55a873e83000 r--p 00000000 fd:01 1234567                    /usr/local/bin/draco
55a873e83000-55a875bb8000 r-xp 00d5e000 fd:01 1234567                    /usr/local/bin/draco
55a875cf8000-55a875e38000 rw-p 02a93000 fd:01 1234567                    /usr/local/bin/draco
55a8a3115000-55a8a38f0000 rw-p 00000000 00:00 0                          [heap]
7f549fdf7000-7f549ff4d000 r-xp 00028000 fd:01 7654321                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f5498000000-7f5498133000 rw-p 00000000 00:00 0 
";

    #[test]
    fn only_the_executables_read_only_mappings_are_chosen() {
        assert_eq!(
            read_only_mappings_of(MAPS, 1234567),
            vec![
                (0x55a873125000, 0x55a873e83000 - 0x55a873125000),
                (0x55a873e83000, 0x55a875bb8000 - 0x55a873e83000),
            ]
        );
        assert!(
            read_only_mappings_of(MAPS, 0).is_empty(),
            "anonymous memory"
        );
        assert!(read_only_mappings_of("garbled line\n", 1234567).is_empty());
    }

    fn resident_file_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .expect("proc status")
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .expect("RssFile")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_executables_pages_leave_the_resident_set_and_come_back_when_used() {
        let before = resident_file_kib();
        if release_code_pages() == 0 {
            eprintln!("skipped: this kernel does not take MADV_PAGEOUT (Linux >= 5.4)");
            return;
        }
        let after = resident_file_kib();
        assert!(
            after < before,
            "resident file pages {before} kB -> {after} kB"
        );
        // Paged out, not lost: the code runs and the data reads the same.
        let text = format!("{:?}", std::collections::BTreeMap::from([(1, "a")]));
        assert_eq!(text, "{1: \"a\"}");
        assert_eq!(read_only_mappings_of(MAPS, 1234567).len(), 2);
    }
}
