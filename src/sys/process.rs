//! Signalling child processes by process group (script steps run in their
//! own group, so a timeout takes down everything they started).

use std::io;

/// SIGKILL every process in process group `pgid` (kill(2) with `-pgid`).
/// ESRCH (the group is already gone) is not an error.
pub fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad process group"))?;
    if pgid <= 1 {
        // -1 would signal every process we may signal, 0 our own group.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad process group",
        ));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours; the
    // negative pid names a process group, checked above to be neither 0
    // (ours) nor 1 (-1: every process).
    let r = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// Whether child `pid` has exited, without reaping it (waitid(2) with
/// WEXITED | WNOHANG | WNOWAIT): while the exited leader is not reaped its
/// PID, and so its process group ID, cannot be reused, so the group can be
/// killed safely before `Child::wait` reaps it.
pub fn child_exited(pid: u32) -> io::Result<bool> {
    let pid = libc::id_t::from(pid);
    // SAFETY: `info` is a zeroed siginfo_t the kernel fills in; waitid reads
    // no other memory of ours. With WNOHANG, si_pid stays 0 while the child
    // runs.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `&mut info` is valid for the call.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: si_pid is valid to read for SIGCHLD-style siginfo filled by
    // waitid (zero when no child changed state).
    Ok(unsafe { info.si_pid() } != 0)
}
