//! The proxy-socket SockMap, driven with raw `bpf(2)` calls.
//!
//! The program defines it with 8-byte values (see `interceptor-ebpf`): only
//! then does the kernel answer a user-space lookup (with the socket cookie,
//! or ENOENT), which is how `doctor` tells a registered proxy socket from a
//! missing one. aya's `SockMap` wrapper assumes 4-byte values, hence these
//! two small calls.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, RawFd},
};

use aya::maps::{Map, MapData};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;

/// `union bpf_attr` as the map element commands read it.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The map data behind a loaded `Map`, if aya classed it as a SockMap.
pub fn data(map: &Map) -> Option<&MapData> {
    match map {
        Map::SockMap(d) | Map::Unsupported(d) => Some(d),
        _ => None,
    }
}

fn call(cmd: libc::c_long, map: &MapData, slot: u32, value: &mut u64) -> io::Result<()> {
    let key = slot;
    let attr = ElemAttr {
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: value as *mut u64 as u64,
        flags: 0,
    };
    // SAFETY: attr, key and value are valid for the duration of the call and
    // sized as the map was created (4-byte key, 8-byte value).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            &attr as *const ElemAttr,
            size_of::<ElemAttr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Puts the listening socket `fd` into `slot`.
pub fn set(map: &MapData, slot: u32, fd: RawFd) -> io::Result<()> {
    let mut value = fd as u64;
    call(BPF_MAP_UPDATE_ELEM, map, slot, &mut value)
}

/// Whether `slot` holds a socket. The kernel removes a socket from the map
/// when it closes, so after a crash this turns false by itself.
pub fn occupied(map: &MapData, slot: u32) -> io::Result<bool> {
    let mut cookie = 0u64;
    match call(BPF_MAP_LOOKUP_ELEM, map, slot, &mut cookie) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}
