//! The agent's pinned maps written by hand, as an operator or another tool
//! with bpftool would: raw bpf(2) on the pins, with the key and value
//! layouts spelled out here, so no code is shared with the agent.

use std::{
    ffi::CString,
    io,
    os::fd::{FromRawFd, OwnedFd},
    path::Path,
};

use nix::libc;

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_OBJ_GET: libc::c_long = 7;
/// Insert only (`BPF_NOEXIST`): a full map answers E2BIG.
const NOEXIST: u64 = 1;

/// `union bpf_attr` for the element commands.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for BPF_OBJ_GET.
#[repr(C)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<i64> {
    // SAFETY: `attr` is a bpf_attr prefix of the size passed; every pointer
    // in it refers to memory that outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub struct PinnedMap(OwnedFd);

impl PinnedMap {
    pub fn open(path: &Path) -> Self {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let attr = ObjAttr {
            pathname: c.as_ptr() as u64,
            bpf_fd: 0,
            file_flags: 0,
            path_fd: 0,
            _pad: 0,
        };
        let fd = bpf(BPF_OBJ_GET, &attr)
            .unwrap_or_else(|e| panic!("BPF_OBJ_GET {}: {e}", path.display()));
        // SAFETY: the kernel just handed us this descriptor.
        Self(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    fn elem(&self, cmd: libc::c_long, key: &[u8], value: Option<&[u8]>) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let attr = ElemAttr {
            map_fd: self.0.as_raw_fd() as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value: value.map_or(0, |v| v.as_ptr() as u64),
            flags: if value.is_some() { NOEXIST } else { 0 },
        };
        bpf(cmd, &attr).map(|_| ())
    }

    /// Adds a new entry; E2BIG when the map is full.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.elem(BPF_MAP_UPDATE_ELEM, key, Some(value))
    }

    pub fn delete(&self, key: &[u8]) -> io::Result<()> {
        self.elem(BPF_MAP_DELETE_ELEM, key, None)
    }
}

/// A `MCPI_PORTS` key for IPv4 `addr` and `port`: the address bytes in
/// network order, the port in host order, family 4, one pad byte.
pub fn rule_key(addr: [u8; 4], port: u16) -> Vec<u8> {
    let mut k = addr.to_vec();
    k.extend_from_slice(&[0; 12]);
    k.extend_from_slice(&port.to_ne_bytes());
    k.extend_from_slice(&[4, 0]);
    k
}

/// A zero `MCPI_COUNTERS` value: four u64 per possible CPU (user space
/// reads and writes every CPU's copy at once).
pub fn zero_counters() -> Vec<u8> {
    vec![0; 32 * possible_cpus()]
}

fn possible_cpus() -> usize {
    // "0-1", "0", or "0-3,5": the highest index plus one.
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .expect("possible CPUs")
        .trim()
        .split([',', '-'])
        .filter_map(|n| n.parse::<usize>().ok())
        .max()
        .expect("a CPU")
        + 1
}
