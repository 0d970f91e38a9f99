//! ironic-agent-boot: a UEFI loader for the x86_64 ramdisk that places the
//! kernel only after ExitBootServices.
//!
//! Why: Linux's EFI stub (6.1.y as Debian ships it) decompresses the kernel
//! itself, into one allocation of max(output_len, kernel_total_size) bytes
//! (52 MiB for Debian's cloud kernel), contiguous, 2 MiB-aligned, made
//! *before* ExitBootServices. GRUB's loaders, systemd-stub and OVMF's
//! `-kernel` path all end up there. In 128 MiB, OVMF leaves no such hole:
//! its PEI memory starts 64 MiB below the top of RAM and splits the free
//! memory in two (about 42 and 39 MiB). After ExitBootServices, though, all
//! boot-services memory is free: this loader hands the kernel to its own
//! decompressor through the 64-bit boot protocol (as kexec and GRUB's
//! legacy `linux` do), with the kernel's init_size buffer laid over
//! memory that is free *once the firmware is gone*, and passes the EFI
//! system table and memory map so that Linux still runs as a UEFI guest
//! (runtime services, efivarfs).
//!
//! The image is this loader with the kernel, the initramfs and an optional
//! command line as PE sections `.linux`, `.initrd`, `.cmdline` (added by
//! objcopy, as a systemd-stub UKI: ramdisk/efi-image-create). The command
//! line is the load options when the firmware passes any (a boot entry, or
//! qemu -append), else `.cmdline`.
//!
//! Steps: pick the kernel's buffer K = [load, load + init_size), the lowest
//! 2 MiB-aligned range at or above 16 MiB and below 4 GiB that holds only
//! conventional and boot-services memory (or this image); allocate what
//! must survive (boot_params, command line, memory map, page tables, stack,
//! trampoline; the payload too when this image lies in K) outside K; exit
//! boot services; turn the final memory map into the e820 table; switch to
//! identity page tables without NX (OVMF marks boot-services and free
//! memory NX), copy the kernel's protected-mode code to `load` and jump to
//! its 64-bit entry (load + 0x200) with RSI = boot_params.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::ffi::c_void;
use core::ptr;

type Handle = *mut c_void;
type Status = usize;

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;
const FOUR_GIB: u64 = 1 << 32;
/// LOAD_PHYSICAL_ADDR of x86_64 kernels: the decompressor never runs below.
const MIN_LOAD: u64 = 16 * MIB;

// EFI memory types
const LOADER_CODE: u32 = 1;
const LOADER_DATA: u32 = 2;
const BS_CODE: u32 = 3;
const BS_DATA: u32 = 4;
const CONVENTIONAL: u32 = 7;
// AllocatePages types
const ALLOCATE_MAX_ADDRESS: u32 = 1;
const ALLOCATE_ADDRESS: u32 = 2;

#[repr(C)]
struct TableHeader {
    signature: u64,
    revision: u32,
    header_size: u32,
    crc32: u32,
    reserved: u32,
}

#[repr(C)]
pub struct SystemTable {
    hdr: TableHeader,
    firmware_vendor: *const u16,
    firmware_revision: u32,
    console_in_handle: Handle,
    con_in: *mut c_void,
    console_out_handle: Handle,
    con_out: *mut TextOutput,
    stderr_handle: Handle,
    stderr: *mut c_void,
    runtime_services: *mut c_void,
    boot_services: *mut BootServices,
    n_tables: usize,
    tables: *mut c_void,
}

#[repr(C)]
struct TextOutput {
    reset: usize,
    output_string: unsafe extern "efiapi" fn(*mut TextOutput, *const u16) -> Status,
}

#[repr(C)]
struct Guid(u32, u16, u16, [u8; 8]);

const LOADED_IMAGE_GUID: Guid = Guid(
    0x5b1b31a1,
    0x9562,
    0x11d2,
    [0x8e, 0x3f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b],
);

#[repr(C)]
struct BootServices {
    hdr: TableHeader,
    raise_tpl: usize,
    restore_tpl: usize,
    allocate_pages: unsafe extern "efiapi" fn(u32, u32, usize, *mut u64) -> Status,
    free_pages: unsafe extern "efiapi" fn(u64, usize) -> Status,
    get_memory_map:
        unsafe extern "efiapi" fn(*mut usize, *mut u8, *mut usize, *mut usize, *mut u32) -> Status,
    allocate_pool: usize,
    free_pool: usize,
    create_event: usize,
    set_timer: usize,
    wait_for_event: usize,
    signal_event: usize,
    close_event: usize,
    check_event: usize,
    install_protocol_interface: usize,
    reinstall_protocol_interface: usize,
    uninstall_protocol_interface: usize,
    handle_protocol: unsafe extern "efiapi" fn(Handle, *const Guid, *mut *mut c_void) -> Status,
    reserved: usize,
    register_protocol_notify: usize,
    locate_handle: usize,
    locate_device_path: usize,
    install_configuration_table: usize,
    load_image: usize,
    start_image: usize,
    exit: usize,
    unload_image: usize,
    exit_boot_services: unsafe extern "efiapi" fn(Handle, usize) -> Status,
}

#[repr(C)]
struct LoadedImage {
    revision: u32,
    parent: Handle,
    system_table: *mut SystemTable,
    device: Handle,
    file_path: *mut c_void,
    reserved: *mut c_void,
    load_options_size: u32,
    load_options: *const u16,
    image_base: *const u8,
    image_size: u64,
    image_code_type: u32,
    image_data_type: u32,
    unload: usize,
}

/// One memory map (pointer into a buffer, size, descriptor size).
#[derive(Clone, Copy)]
struct Map {
    buf: *const u8,
    size: usize,
    desc: usize,
}

impl Map {
    fn len(&self) -> usize {
        self.size / self.desc
    }
    /// (type, start, end) of descriptor `i`.
    fn get(&self, i: usize) -> (u32, u64, u64) {
        // SAFETY: i < len(); the firmware wrote `size` bytes of descriptors
        unsafe {
            let d = self.buf.add(i * self.desc);
            let ty = ptr::read_unaligned(d as *const u32);
            let start = ptr::read_unaligned(d.add(8) as *const u64);
            let pages = ptr::read_unaligned(d.add(24) as *const u64);
            (ty, start, start + pages * PAGE)
        }
    }
}

struct Efi {
    st: *mut SystemTable,
    bs: *mut BootServices,
}

impl Efi {
    fn print(&self, parts: &[&[u8]]) {
        let mut buf = [0u16; 512];
        let mut n = 0;
        for p in parts.iter().chain([&b"\r\n"[..]].iter()) {
            for &c in p.iter() {
                if n < buf.len() - 1 {
                    buf[n] = c as u16;
                    n += 1;
                }
            }
        }
        // SAFETY: the console protocol of the system table, NUL-terminated text
        unsafe {
            let out = (*self.st).con_out;
            if !out.is_null() {
                ((*out).output_string)(out, buf.as_ptr());
            }
        }
    }

    fn alloc_at(&self, kind: u32, ty: u32, pages: u64, addr: u64) -> Option<u64> {
        let mut a = addr;
        // SAFETY: boot services are up; `a` is written by the firmware
        let s = unsafe { ((*self.bs).allocate_pages)(ty, kind, pages as usize, &mut a) };
        (s == 0).then_some(a)
    }

    /// The memory map into `buf` (capacity `cap` bytes); (map, key).
    fn memory_map(&self, buf: *mut u8, cap: usize) -> Option<(Map, usize)> {
        let (mut size, mut key, mut desc, mut ver) = (cap, 0usize, 0usize, 0u32);
        // SAFETY: `buf` holds `cap` bytes
        let s =
            unsafe { ((*self.bs).get_memory_map)(&mut size, buf, &mut key, &mut desc, &mut ver) };
        (s == 0 && desc >= 40).then_some((Map { buf, size, desc }, key))
    }

    /// Size in bytes the memory map needs now.
    fn memory_map_size(&self) -> usize {
        let (mut size, mut key, mut desc, mut ver) = (0usize, 0usize, 0usize, 0u32);
        // SAFETY: a size query (buffer too small by design)
        unsafe {
            ((*self.bs).get_memory_map)(&mut size, ptr::null_mut(), &mut key, &mut desc, &mut ver)
        };
        size.max(desc)
    }
}

fn overlaps(a0: u64, a1: u64, b0: u64, b1: u64) -> bool {
    a0 < b1 && b0 < a1
}

/// Whether [lo, hi) holds only memory that is free once boot services
/// are gone (conventional, boot-services code and data) or lies inside
/// `own` (this image), with no holes.
fn clear_after_exit(map: &Map, lo: u64, hi: u64, own: (u64, u64)) -> bool {
    let mut covered = 0;
    for i in 0..map.len() {
        let (ty, s, e) = map.get(i);
        if !overlaps(s, e, lo, hi) {
            continue;
        }
        let ok = match ty {
            CONVENTIONAL | BS_CODE | BS_DATA => true,
            LOADER_CODE | LOADER_DATA => s >= own.0 && e <= own.1,
            _ => false,
        };
        if !ok {
            return false;
        }
        covered += e.min(hi) - s.max(lo);
    }
    covered == hi - lo
}

/// Pages of conventional memory below 4 GiB outside [k0, k1), the highest
/// such range that fits; allocated as `kind`.
fn alloc_outside(
    efi: &Efi,
    scratch: &mut Scratch,
    kind: u32,
    bytes: u64,
    k0: u64,
    k1: u64,
) -> Option<u64> {
    let pages = bytes.div_ceil(PAGE);
    let len = pages * PAGE;
    let map = scratch.map(efi)?;
    let mut best: Option<u64> = None;
    for i in 0..map.len() {
        let (ty, s, e) = map.get(i);
        if ty != CONVENTIONAL {
            continue;
        }
        let e = e.min(FOUR_GIB);
        // the part above K, then the part below K
        for (lo, hi) in [(s.max(k1), e), (s, e.min(k0))] {
            if hi > lo && hi - lo >= len {
                let at = (hi - len) & !(PAGE - 1);
                if at >= lo && best.is_none_or(|b| at > b) {
                    best = Some(at);
                }
            }
        }
    }
    efi.alloc_at(kind, ALLOCATE_ADDRESS, pages, best?)
}

/// A buffer for memory maps taken while choosing allocations.
struct Scratch {
    buf: u64,
    cap: usize,
}

impl Scratch {
    fn map(&mut self, efi: &Efi) -> Option<Map> {
        efi.memory_map(self.buf as *mut u8, self.cap)
            .map(|(m, _)| m)
    }
}

/// A PE section of this image: (address in memory, length).
fn section(base: *const u8, name: &[u8]) -> Option<(*const u8, usize)> {
    // SAFETY: `base` is this loaded image: DOS header, PE header and section
    // table are mapped (the firmware loaded them)
    unsafe {
        let pe = ptr::read_unaligned(base.add(0x3c) as *const u32) as usize;
        if ptr::read_unaligned(base.add(pe) as *const u32) != 0x4550 {
            return None;
        }
        let n = ptr::read_unaligned(base.add(pe + 6) as *const u16) as usize;
        let opt = ptr::read_unaligned(base.add(pe + 20) as *const u16) as usize;
        let table = base.add(pe + 24 + opt);
        for i in 0..n {
            let s = table.add(i * 40);
            let sname = core::slice::from_raw_parts(s, 8);
            let len = name.len().min(8);
            if sname[..len] == name[..len] && (len == 8 || sname[len] == 0) {
                let vsize = ptr::read_unaligned(s.add(8) as *const u32) as usize;
                let va = ptr::read_unaligned(s.add(12) as *const u32) as usize;
                return Some((base.add(va), vsize));
            }
        }
        None
    }
}

fn hex(v: u64, out: &mut [u8; 18]) -> &[u8] {
    out[0] = b'0';
    out[1] = b'x';
    for i in 0..16 {
        let d = ((v >> ((15 - i) * 4)) & 0xf) as u8;
        out[2 + i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
    }
    &out[..]
}

unsafe fn put32(bp: *mut u8, off: usize, v: u32) {
    ptr::write_unaligned(bp.add(off) as *mut u32, v);
}

unsafe fn put64(bp: *mut u8, off: usize, v: u64) {
    ptr::write_unaligned(bp.add(off) as *mut u64, v);
}

// The last step, copied to a page of its own (LoaderCode) and run from
// there: it must not live in the image, which K may cover. Position
// independent; in: rdi page tables, rsi stack top, rdx source, rcx length,
// r8 destination, r9 entry, r10 boot_params.
global_asm!(
    ".globl ia_tramp_start",
    ".globl ia_tramp_end",
    "ia_tramp_start:",
    "cli",
    "mov cr3, rdi",
    "mov rsp, rsi",
    "mov rsi, rdx",
    "mov rdi, r8",
    "cld",
    "rep movsb",
    "mov rsi, r10",
    "xor ebp, ebp",
    "jmp r9",
    "ia_tramp_end:",
);

extern "C" {
    static ia_tramp_start: u8;
    static ia_tramp_end: u8;
}

/// boot_params offsets (Documentation/arch/x86/zero-page.rst, boot.rst)
mod bp {
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    pub const EFI_INFO: usize = 0x1c0;
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const HDR: usize = 0x1f1;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const CODE32_START: usize = 0x214;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const SETUP_DATA: usize = 0x250;
    pub const E820_TABLE: usize = 0x2d0;
    pub const E820_MAX: usize = 128;
}

fn fail(efi: &Efi, why: &[u8]) -> Status {
    efi.print(&[b"ironic-agent-boot: ", why]);
    (1 << 63) | 1 // EFI_LOAD_ERROR
}

/// # Safety
/// Called by the firmware with this image's handle and the system table.
#[no_mangle]
pub unsafe extern "efiapi" fn efi_main(image: Handle, st: *mut SystemTable) -> Status {
    // SAFETY: the firmware passes a valid system table
    let efi = Efi {
        st,
        bs: (*st).boot_services,
    };
    // SAFETY: the rest talks to the firmware and to memory it handed out
    unsafe { run(&efi, image) }
}

unsafe fn run(efi: &Efi, image: Handle) -> Status {
    let mut li: *mut c_void = ptr::null_mut();
    if ((*efi.bs).handle_protocol)(image, &LOADED_IMAGE_GUID, &mut li) != 0 {
        return fail(efi, b"no loaded image protocol");
    }
    let li = li as *const LoadedImage;
    let base = (*li).image_base;
    let own = (base as u64, base as u64 + (*li).image_size);
    let (Some((kernel, klen)), Some((initrd, ilen))) =
        (section(base, b".linux"), section(base, b".initrd"))
    else {
        return fail(efi, b"no .linux or .initrd section in this image");
    };
    let k = core::slice::from_raw_parts(kernel, klen);
    if klen < 0x1000 || &k[0x202..0x206] != b"HdrS" {
        return fail(efi, b".linux is not a bzImage");
    }
    let version = u16::from_le_bytes([k[0x206], k[0x207]]);
    let xloadflags = u16::from_le_bytes([k[0x236], k[0x237]]);
    if version < 0x20c || xloadflags & 1 == 0 || k[0x234] == 0 {
        return fail(
            efi,
            b"the kernel has no relocatable 64-bit entry (boot protocol < 2.12)",
        );
    }
    let setup_sects = if k[0x1f1] == 0 { 4 } else { k[0x1f1] as usize };
    let pm_off = (setup_sects + 1) * 512;
    let init_size = u32::from_le_bytes([k[0x260], k[0x261], k[0x262], k[0x263]]) as u64;
    let cmdline_max = u32::from_le_bytes([k[0x238], k[0x239], k[0x23a], k[0x23b]]) as usize;
    let pm_len = klen - pm_off;

    // a scratch buffer for memory maps (room for growth)
    let cap = efi.memory_map_size() + 64 * 48;
    let scratch_pages = (cap as u64).div_ceil(PAGE);
    let Some(sbuf) = efi.alloc_at(
        LOADER_DATA,
        ALLOCATE_MAX_ADDRESS,
        scratch_pages,
        FOUR_GIB - 1,
    ) else {
        return fail(efi, b"cannot allocate a memory map buffer");
    };
    let mut scratch = Scratch {
        buf: sbuf,
        cap: (scratch_pages * PAGE) as usize,
    };

    // K: the kernel's in-place decompression buffer
    let Some(map) = scratch.map(efi) else {
        return fail(efi, b"GetMemoryMap failed");
    };
    let mut load = MIN_LOAD;
    let mut found = false;
    while load + init_size <= FOUR_GIB {
        if clear_after_exit(&map, load, load + init_size, own) {
            found = true;
            break;
        }
        load += 2 * MIB;
    }
    if !found {
        return fail(efi, b"no room for the kernel's init_size below 4 GiB");
    }
    let (k0, k1) = (load, load + init_size);

    // what must survive, outside K
    let mut a = |kind: u32, bytes: u64| alloc_outside(efi, &mut scratch, kind, bytes, k0, k1);
    let (Some(bpage), Some(cmd), Some(ext), Some(pt), Some(stack), Some(tramp)) = (
        a(LOADER_DATA, PAGE),
        a(LOADER_DATA, PAGE),
        a(LOADER_DATA, PAGE),
        a(LOADER_DATA, 7 * PAGE),
        a(LOADER_DATA, 16 * PAGE),
        a(LOADER_CODE, PAGE),
    ) else {
        return fail(
            efi,
            b"cannot allocate boot_params, command line, page tables",
        );
    };
    // the payload: in place unless this image lies in K or above 4 GiB
    let (mut src, mut rd) = (kernel.add(pm_off) as u64, initrd as u64);
    if overlaps(own.0, own.1, k0, k1) || own.1 > FOUR_GIB {
        let (Some(s), Some(r)) = (a(LOADER_DATA, pm_len as u64), a(LOADER_DATA, ilen as u64))
        else {
            return fail(
                efi,
                b"cannot move the kernel and initramfs out of the kernel's way",
            );
        };
        ptr::copy_nonoverlapping(src as *const u8, s as *mut u8, pm_len);
        ptr::copy_nonoverlapping(rd as *const u8, r as *mut u8, ilen);
        src = s;
        rd = r;
    }
    // the final memory map's buffer, also outside K
    let mm_cap = efi.memory_map_size() + 64 * 48;
    let Some(mm) = a(LOADER_DATA, mm_cap as u64) else {
        return fail(efi, b"cannot allocate the final memory map");
    };
    let mm_cap = ((mm_cap as u64).div_ceil(PAGE) * PAGE) as usize;

    // the command line: load options (UCS-2) when given, else .cmdline
    let cl = cmd as *mut u8;
    ptr::write_bytes(cl, 0, PAGE as usize);
    let room = (PAGE as usize - 1).min(cmdline_max);
    let mut n = 0;
    let opts = (*li).load_options;
    let olen = (*li).load_options_size as usize / 2;
    if olen > 0 && !opts.is_null() && *opts > 0x1f {
        for i in 0..olen {
            let c = *opts.add(i);
            if c == 0 || n >= room {
                break;
            }
            *cl.add(n) = if c < 0x80 { c as u8 } else { b'?' };
            n += 1;
        }
    } else if let Some((c, len)) = section(base, b".cmdline") {
        for i in 0..len {
            let ch = *c.add(i);
            if ch == 0 || n >= room {
                break;
            }
            *cl.add(n) = ch;
            n += 1;
        }
    }

    // boot_params: the setup header, then the loader's fields
    let b = bpage as *mut u8;
    ptr::write_bytes(b, 0, PAGE as usize);
    let hdr_end = 0x202 + k[0x201] as usize;
    ptr::copy_nonoverlapping(k.as_ptr().add(bp::HDR), b.add(bp::HDR), hdr_end - bp::HDR);
    *b.add(bp::TYPE_OF_LOADER) = 0xff;
    put32(b, bp::CODE32_START, load as u32);
    put32(b, bp::RAMDISK_IMAGE, rd as u32);
    put32(b, bp::RAMDISK_SIZE, ilen as u32);
    put32(b, bp::EXT_RAMDISK_IMAGE, (rd >> 32) as u32);
    put32(b, bp::EXT_RAMDISK_SIZE, 0);
    put32(b, bp::CMD_LINE_PTR, cmd as u32);
    put32(b, bp::EXT_CMD_LINE_PTR, (cmd >> 32) as u32);

    // identity page tables for 0..4 GiB, 2 MiB pages, no NX: PML4, PDPT,
    // 4 page directories (and a PML5 above them when the firmware runs
    // with 5-level paging)
    let t = pt as *mut u64;
    ptr::write_bytes(t, 0, 7 * 512);
    *t = (pt + PAGE) | 3;
    for i in 0..4u64 {
        *t.add(512 + i as usize) = (pt + (2 + i) * PAGE) | 3;
        for j in 0..512u64 {
            *t.add(((2 + i) * 512 + j) as usize) = ((i * 512 + j) << 21) | 0x83;
        }
    }
    let cr4: u64;
    asm!("mov {}, cr4", out(reg) cr4);
    let root = if cr4 & (1 << 12) != 0 {
        *t.add(6 * 512) = pt | 3;
        pt + 6 * PAGE
    } else {
        pt
    };
    let tlen = ptr::addr_of!(ia_tramp_end) as usize - ptr::addr_of!(ia_tramp_start) as usize;
    ptr::copy_nonoverlapping(ptr::addr_of!(ia_tramp_start), tramp as *mut u8, tlen);

    let mut h = [0u8; 18];
    let mut h2 = [0u8; 18];
    efi.print(&[
        b"ironic-agent-boot: kernel at ",
        hex(load, &mut h),
        b", init_size ",
        hex(init_size, &mut h2),
    ]);

    // exit boot services (a changed map key: fetch the map again, retry)
    let mut exited = None;
    for _ in 0..8 {
        let Some((map, key)) = efi.memory_map(mm as *mut u8, mm_cap) else {
            break;
        };
        if ((*efi.bs).exit_boot_services)(image, key) == 0 {
            exited = Some(map);
            break;
        }
    }
    let Some(map) = exited else {
        return fail(efi, b"ExitBootServices failed");
    };
    // No firmware from here on. K must still be clear in the final map
    // (nothing but the firmware's own boot-services memory changed).
    if !clear_after_exit(&map, k0, k1, own) {
        loop {
            asm!("cli", "hlt");
        }
    }

    // e820 from the final map (as the EFI stub's setup_e820), the rest in
    // a SETUP_E820_EXT setup_data
    let mut nr = 0usize;
    let ext_max = ((PAGE as usize) - 16) / 20;
    let mut n_ext = 0usize;
    let mut last: Option<(u64, u64, u32, usize)> = None; // (addr, size, type, slot)
    let slot = |i: usize| -> *mut u8 {
        if i < bp::E820_MAX {
            b.add(bp::E820_TABLE + i * 20)
        } else {
            (ext as *mut u8).add(16 + (i - bp::E820_MAX) * 20)
        }
    };
    for i in 0..map.len() {
        let (ty, s, e) = map.get(i);
        let e820 = match ty {
            0 | 5 | 6 | 11 | 12 | 13 => 2, // reserved, runtime, MMIO, PAL
            8 => 5,                        // unusable
            9 => 3,                        // ACPI reclaim
            1..=4 | 7 => 1,                // RAM
            10 => 4,                       // ACPI NVS
            14 => 7,                       // persistent
            _ => continue,
        };
        if let Some((la, ls, lt, li)) = last {
            if lt == e820 && la + ls == s {
                let sz = ls + (e - s);
                put64(slot(li), 8, sz);
                last = Some((la, sz, lt, li));
                continue;
            }
        }
        if nr >= bp::E820_MAX + ext_max {
            break;
        }
        let p = slot(nr);
        put64(p, 0, s);
        put64(p, 8, e - s);
        put32(p, 16, e820);
        last = Some((s, e - s, e820, nr));
        nr += 1;
        if nr > bp::E820_MAX {
            n_ext += 1;
        }
    }
    *b.add(bp::E820_ENTRIES) = nr.min(bp::E820_MAX) as u8;
    if n_ext > 0 {
        let x = ext as *mut u8;
        put64(x, 0, 0);
        put32(x, 8, 1); // SETUP_E820_EXT
        put32(x, 12, (n_ext * 20) as u32);
        put64(b, bp::SETUP_DATA, ext);
    }
    // efi_info: "EL64", system table, memory map
    let ei = bp::EFI_INFO;
    put32(b, ei, u32::from_le_bytes(*b"EL64"));
    put32(b, ei + 4, efi.st as u64 as u32);
    put32(b, ei + 8, map.desc as u32);
    put32(b, ei + 12, 1);
    put32(b, ei + 16, mm as u32);
    put32(b, ei + 20, map.size as u32);
    put32(b, ei + 24, (efi.st as u64 >> 32) as u32);
    put32(b, ei + 28, (mm >> 32) as u32);

    asm!(
        "jmp {t}",
        t = in(reg) tramp,
        in("rdi") root,
        in("rsi") stack + 16 * PAGE,
        in("rdx") src,
        in("rcx") pm_len,
        in("r8") load,
        in("r9") load + 0x200,
        in("r10") bpage,
        options(noreturn)
    );
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        // SAFETY: halting the CPU
        unsafe { asm!("hlt") };
    }
}
