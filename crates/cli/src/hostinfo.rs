//! Facts about this machine that a Node reports: hostname, addresses, capacity, OS and
//! kernel, identifiers, and the pressure conditions read from the kernel.

use std::net::Ipv4Addr;
use std::path::Path;

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).to_lowercase()
}

/// The IPv4 addresses of up interfaces other than loopback, in interface order.
pub fn ipv4_addresses() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk read-only and then free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
            let lo = ifa.ifa_flags & (libc::IFF_LOOPBACK as u32) != 0;
            if up
                && !lo
                && !ifa.ifa_addr.is_null()
                && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET
            {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A `key:   123 kB` value of /proc/meminfo, in KiB.
fn meminfo_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l[key.len() + 1..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

pub fn memory_total_kib() -> u64 {
    meminfo_kib("MemTotal").unwrap_or(0)
}

pub fn memory_available_kib() -> u64 {
    meminfo_kib("MemAvailable").unwrap_or(0)
}

/// (total, available) bytes of the filesystem holding `path`.
pub fn disk_bytes(path: &Path) -> (u64, u64) {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return (0, 0);
    };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return (0, 0);
    }
    let frsize = st.f_frsize as u64;
    (st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize)
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn kernel_release() -> String {
    read_trim("/proc/sys/kernel/osrelease")
}

pub fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string())
}

pub fn machine_id() -> String {
    read_trim("/etc/machine-id")
}

pub fn system_uuid() -> String {
    match read_trim("/sys/class/dmi/id/product_uuid") {
        s if !s.is_empty() => s.to_lowercase(),
        _ => machine_id(),
    }
}

pub fn boot_id() -> String {
    read_trim("/proc/sys/kernel/random/boot_id")
}

/// (number of tasks, pid_max): PID pressure when tasks approach the maximum.
pub fn pid_usage() -> (u64, u64) {
    let max = read_trim("/proc/sys/kernel/pid_max")
        .parse()
        .unwrap_or(32768);
    let loadavg = read_trim("/proc/loadavg");
    // The fourth field is "running/total".
    let total = loadavg
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split('/').nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (total, max)
}
