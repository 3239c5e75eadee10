//! The data dir and the socket file, handled through one open descriptor of
//! the directory: every check and change (`fstatat`, `unlinkat`,
//! `fchmodat`) names the entry relative to that descriptor and never
//! follows a symlink at the socket's name, and the socket is bound and
//! connected through `/proc/self/fd/N/…` (the same directory, and a path
//! short enough for `sun_path` whatever the data dir's length).

// `mode_t`, `dev_t` and `ino_t` differ in width between unixes: the casts
// are needed somewhere even where they are no-ops here.
#![allow(clippy::unnecessary_cast)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An open data dir.
pub struct DataDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What identifies one file: a socket we bound is removed only while the
/// name still points at it.
pub type FileId = (u64, u64);

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

impl DataDir {
    /// Opens `path` as a directory (the path itself may be a symlink the
    /// operator chose; everything after this goes through the descriptor).
    pub fn open(path: &Path) -> io::Result<DataDir> {
        let c = cstr(path.as_os_str().as_bytes())?;
        // SAFETY: `c` is a valid NUL-terminated string for the call.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        check(fd)?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(DataDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn display(&self) -> std::path::Display<'_> {
        self.path.display()
    }

    /// The directory's owner and mode.
    pub fn owner_and_mode(&self) -> io::Result<(u32, u32)> {
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open and `st` lives for the call.
        check(unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) })?;
        Ok((st.st_uid, st.st_mode as u32 & 0o7777))
    }

    /// Makes sure only this process's user can enter the directory: it must
    /// be owned by this user, and group/other permissions are removed if
    /// present (returns whether they were). Another user who could enter
    /// the directory could otherwise race the socket's creation.
    pub fn make_private(&self) -> Result<bool, String> {
        let (owner, mode) = self.owner_and_mode().map_err(|e| e.to_string())?;
        let me = euid();
        if owner != me {
            return Err(format!(
                "{} is owned by uid {owner}, not by this process's uid {me}",
                self.display()
            ));
        }
        if mode & 0o077 == 0 {
            return Ok(false);
        }
        // SAFETY: the descriptor is open; fchmod changes only that inode.
        check(unsafe { libc::fchmod(self.fd.as_raw_fd(), (mode & 0o700) as libc::mode_t) })
            .map_err(|e| format!("cannot restrict {} to its owner: {e}", self.display()))?;
        Ok(true)
    }

    /// The entry `name`'s type bits and identity, without following a
    /// symlink; `None` if there is no such entry.
    pub fn entry(&self, name: &str) -> io::Result<Option<(u32, FileId)>> {
        let c = cstr(name.as_bytes())?;
        // SAFETY: as in `owner_and_mode`.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, NUL-terminated name, `st` lives for the call.
        let rc = unsafe { libc::fstatat(self.fd.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        match check(rc) {
            Ok(()) => Ok(Some((
                st.st_mode as u32 & libc::S_IFMT as u32,
                (st.st_dev as u64, st.st_ino as u64),
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the entry `name` (a symlink itself, never its target).
    pub fn unlink(&self, name: &str) -> io::Result<()> {
        let c = cstr(name.as_bytes())?;
        // SAFETY: valid descriptor and NUL-terminated name.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) })
    }

    /// Sets the mode of the entry `name`. Called only on the socket just
    /// bound, in a directory no other user can enter.
    pub fn chmod(&self, name: &str, mode: u32) -> io::Result<()> {
        let c = cstr(name.as_bytes())?;
        // SAFETY: valid descriptor and NUL-terminated name.
        check(unsafe { libc::fchmodat(self.fd.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, 0) })
    }

    /// A path naming `name` in this very directory, for `bind`/`connect`:
    /// through `/proc/self/fd` where it exists (short, and the directory
    /// cannot be swapped underneath), else the plain path.
    pub fn path_of(&self, name: &str) -> PathBuf {
        let proc_dir = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        if proc_dir.is_dir() {
            proc_dir.join(name)
        } else {
            self.path.join(name)
        }
    }
}

/// Whether the mode bits from [`DataDir::entry`] are a socket's.
pub fn is_socket(kind: u32) -> bool {
    kind == libc::S_IFSOCK as u32
}

/// Whether the mode bits from [`DataDir::entry`] are a symlink's.
pub fn is_symlink(kind: u32) -> bool {
    kind == libc::S_IFLNK as u32
}

/// The uid of the process at the other end of a connected Unix socket,
/// as the kernel recorded it at `connect`/`listen` (not what it claims).
pub fn peer_uid(fd: &impl AsRawFd) -> io::Result<u32> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` and `len` live for the call and `len` is its size.
        check(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        })?;
        Ok(cred.uid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: both out-pointers live for the call.
        check(unsafe { libc::getpeereid(fd.as_raw_fd(), &mut uid, &mut gid) })?;
        Ok(uid)
    }
}
