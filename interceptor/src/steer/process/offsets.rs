//! Kernel struct offsets for the capture program, from the running
//! kernel's BTF.
//!
//! aya relocates no field accesses in tracing programs (no CO-RE), so the
//! programs read `sock`, `net`, `task_struct`, `mm_struct`, `file`, `inode`
//! and `super_block` fields at the byte offsets computed here and written to
//! `MCPI_PROC_OFFS`. Fields inside anonymous structs and unions (`mm_struct`
//! keeps most of its fields in one) are found by descending into them.

use std::path::Path;

use btf_rs::{Btf, Struct, Type};
use interceptor_common::{HOOK_SOCK_STATE, OFFSET_ABSENT, ProcOffsets};

use super::CaptureError;

/// Where the kernel publishes its BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's BTF, parsed.
pub fn vmlinux() -> Result<Btf, CaptureError> {
    if !Path::new(VMLINUX).exists() {
        return Err(CaptureError::NoBtf);
    }
    Btf::from_file(VMLINUX).map_err(|e| CaptureError::Btf(e.to_string()))
}

/// The offsets for this kernel; `netns` is the agent's namespace inode.
/// Every field but `task_struct.loginuid` (CONFIG_AUDIT) is required.
pub fn compute(btf: &Btf, netns: u32) -> Result<ProcOffsets, CaptureError> {
    // The tracepoint's BTF type, which tp_btf programs attach by.
    let hook = format!("btf_trace_{HOOK_SOCK_STATE}");
    if btf
        .resolve_ids_by_name(&hook)
        .map_or(true, |v| v.is_empty())
    {
        return Err(CaptureError::NoHook(hook));
    }
    let f = |s: &str, path: &[&str]| field(btf, s, path);
    let sk = |name: &str| f("sock_common", &[name]);
    Ok(ProcOffsets {
        enabled: 1,
        netns,
        sk_family: sk("skc_family")?,
        sk_daddr: sk("skc_daddr")?,
        sk_rcv_saddr: sk("skc_rcv_saddr")?,
        sk_dport: sk("skc_dport")?,
        sk_num: sk("skc_num")?,
        sk_net: sk("skc_net")?,
        sk_v6_daddr: sk("skc_v6_daddr")?,
        sk_v6_rcv_saddr: sk("skc_v6_rcv_saddr")?,
        net_inum: f("net", &["ns", "inum"])?,
        task_group_leader: f("task_struct", &["group_leader"])?,
        task_mm: f("task_struct", &["mm"])?,
        task_loginuid: f("task_struct", &["loginuid"]).unwrap_or(OFFSET_ABSENT),
        task_start_boottime: f("task_struct", &["start_boottime"])?,
        mm_exe_file: f("mm_struct", &["exe_file"])?,
        file_inode: f("file", &["f_inode"])?,
        inode_ino: f("inode", &["i_ino"])?,
        inode_sb: f("inode", &["i_sb"])?,
        sb_dev: f("super_block", &["s_dev"])?,
    })
}

/// Byte offset of `path` (a field, then fields of the struct it is) from
/// the start of struct `name`. `sock` starts with its `sock_common`, so
/// `sock_common` offsets are `sock` offsets.
fn field(btf: &Btf, name: &str, path: &[&str]) -> Result<u32, CaptureError> {
    let missing = || CaptureError::NoField(format!("{name}.{}", path.join(".")));
    let mut ty = btf
        .resolve_types_by_name(name)
        .map_err(|_| missing())?
        .into_iter()
        .find(|t| matches!(t, Type::Struct(_)))
        .ok_or_else(missing)?;
    let mut bits = 0u32;
    for (i, part) in path.iter().enumerate() {
        let (Type::Struct(s) | Type::Union(s)) = &ty else {
            return Err(missing());
        };
        let (off, next) = member(btf, s, part, 0).ok_or_else(missing)?;
        bits += off;
        if i + 1 < path.len() {
            ty = strip(btf, next).ok_or_else(missing)?;
        }
    }
    if !bits.is_multiple_of(8) {
        return Err(missing());
    }
    Ok(bits / 8)
}

/// The bit offset and type of member `name` of `s`, looking inside
/// anonymous struct and union members; `depth` bounds the descent.
fn member(btf: &Btf, s: &Struct, name: &str, depth: u32) -> Option<(u32, Type)> {
    if depth > 8 {
        return None;
    }
    for m in &s.members {
        let n = btf.resolve_name(m).unwrap_or_default();
        let ty = btf.resolve_chained_type(m).ok()?;
        if n == name {
            return Some((m.bit_offset(), ty));
        }
        if n.is_empty()
            && let Some(Type::Struct(inner) | Type::Union(inner)) = strip(btf, ty)
            && let Some((off, t)) = member(btf, &inner, name, depth + 1)
        {
            return Some((m.bit_offset() + off, t));
        }
    }
    None
}

/// `ty` without typedefs and qualifiers.
fn strip(btf: &Btf, mut ty: Type) -> Option<Type> {
    for _ in 0..16 {
        ty = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t).ok()?,
            Type::Const(t) | Type::Volatile(t) | Type::Restrict(t) => {
                btf.resolve_chained_type(t).ok()?
            }
            Type::TypeTag(t) => btf.resolve_chained_type(t).ok()?,
            _ => return Some(ty),
        };
    }
    None
}
