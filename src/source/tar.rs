//! Reading tar archives as untrusted input.
//!
//! The container format is POSIX ustar as PostgreSQL writes it
//! (`tarCreateHeader()`, `src/port/tar.c`: ustar headers, sizes above 8 GB
//! in base-256), plus what GNU and POSIX tar add when others repack a
//! backup: GNU long names (`L`, `K`) and pax extended headers (`x`, `g`).
//! The `tar` crate decodes the headers; its own handling of long names and
//! pax headers reads them into memory whole, whatever size the header
//! claims, so they are read here, in raw mode, with a bound
//! ([`EXTENSION_LIMIT`]).
//!
//! What a member may be ([`Member`]): a regular file or a directory, at a
//! plain relative path (`./` prefixes dropped; `..`, absolute paths, empty
//! or NUL-carrying names refused), or a symbolic link only where
//! PostgreSQL puts one (`pg_tblspc/<oid>`, for [`MemberKind::Symlink`]'s
//! caller to judge). Hard links, devices, FIFOs, sparse and contiguous
//! files are refused by name, never unpacked: nothing here writes.

use std::io::{self, Read};

/// The most a long name or pax header may hold.
pub const EXTENSION_LIMIT: u64 = 64 * 1024;

/// What a member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberKind {
    File,
    Dir,
    /// A symbolic link and its target, as stored.
    Symlink(Vec<u8>),
}

/// One member's header, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Plain relative path, `/`-separated, no trailing `/`.
    pub path: Vec<u8>,
    pub kind: MemberKind,
    pub size: u64,
    pub mode: u32,
    pub mtime: i64,
}

/// Why a member is refused (a backup may not hold it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub path: String,
    pub why: String,
}

/// A path from an archive as a plain relative path, or why not.
pub fn plain_path(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.contains(&0) {
        return Err("a name with a NUL byte".into());
    }
    if raw.starts_with(b"/") {
        return Err("an absolute path".into());
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err("a path with '..'".into()),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        // "./" itself: the archive's root directory.
        return Ok(Vec::new());
    }
    Ok(parts.join(&b'/'))
}

/// The value of `key` in a pax extended header.
fn pax_value<'a>(pax: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut rest = pax;
    while !rest.is_empty() {
        // "<len> <key>=<value>\n", len counting the whole record.
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp + 1 || len > rest.len() {
            return None;
        }
        let rec = &rest[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
        if let Some(eq) = rec.iter().position(|b| *b == b'=') {
            if &rec[..eq] == key {
                return Some(&rec[eq + 1..]);
            }
        }
        rest = &rest[len..];
    }
    None
}

fn read_extension(e: &mut tar::Entry<'_, impl Read>) -> io::Result<Vec<u8>> {
    let size = e.header().size()?;
    if size > EXTENSION_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a long name or pax header of {size} bytes (at most {EXTENSION_LIMIT} are read)"),
        ));
    }
    let mut v = Vec::with_capacity(size as usize);
    e.take(EXTENSION_LIMIT).read_to_end(&mut v)?;
    Ok(v)
}

/// What one archive holds, member by member (built once per member and
/// handed over at once: its size does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Step<'a, R: Read> {
    /// A member a backup may hold, and its contents.
    Member(Member, tar::Entry<'a, R>),
    /// A member no backup may hold.
    Refused(Refused),
}

/// Read the members of an archive in order, calling `f` for each. The
/// reader is consumed once; member contents not read by `f` are skipped.
pub fn for_each<R: Read>(reader: R, mut f: impl FnMut(Step<'_, R>) -> io::Result<bool>) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries()?.raw(true);
    let mut ext = Extensions::default();
    for entry in entries {
        if crate::signals::interrupted() {
            return Err(io::Error::other("interrupted by signal"));
        }
        let mut e = entry?;
        if ext.absorb(&mut e)? {
            continue;
        }
        let named = ext.apply(e.header());
        let shown = String::from_utf8_lossy(&named.path).into_owned();
        let step = match plain_path(&named.path) {
            Err(why) => Step::Refused(Refused { path: shown, why }),
            Ok(path) => {
                let h = e.header();
                let t = h.entry_type();
                let size = named.size(h)?;
                match member_kind(t, named.link) {
                    Some(kind) => {
                        let h = e.header();
                        let size = if kind == MemberKind::File { size } else { 0 };
                        let mode = h.mode().unwrap_or(0o600);
                        let mtime = h.mtime().unwrap_or(0) as i64;
                        Step::Member(Member { path, kind, size, mode, mtime }, e)
                    }
                    None => Step::Refused(Refused { path: shown, why: refusal(t) }),
                }
            }
        };
        if !f(step)? {
            return Ok(());
        }
    }
    Ok(())
}

/// The extension headers read so far that apply to the next member: GNU
/// long names and links, and pax local headers (global ones are read and
/// ignored).
#[derive(Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

/// A member's name and link target, extensions applied, and its pax
/// header (which may give its size).
struct Named {
    path: Vec<u8>,
    link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Named {
    /// The member's size: pax's, else the header's.
    fn size(&self, h: &tar::Header) -> io::Result<u64> {
        match self.pax.as_deref().and_then(|p| pax_value(p, b"size")) {
            Some(s) => std::str::from_utf8(s)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a pax size that is not a number")),
            None => h.size(),
        }
    }
}

impl Extensions {
    /// Keep `e` if it is an extension header; whether it was.
    fn absorb<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> io::Result<bool> {
        let t = e.header().entry_type();
        let slot = if t.is_gnu_longname() {
            &mut self.long_name
        } else if t.is_gnu_longlink() {
            &mut self.long_link
        } else if t.is_pax_local_extensions() {
            &mut self.pax
        } else if t.is_pax_global_extensions() {
            read_extension(e)?;
            return Ok(true);
        } else {
            return Ok(false);
        };
        *slot = Some(read_extension(e)?);
        Ok(true)
    }

    /// The next member's name and link: pax first, then the GNU
    /// extensions, then the header itself. The extensions are used up.
    fn apply(&mut self, h: &tar::Header) -> Named {
        let pax = self.pax.take();
        let long_name = self.long_name.take();
        let long_link = self.long_link.take();
        let path = pax
            .as_deref()
            .and_then(|p| pax_value(p, b"path").map(<[u8]>::to_vec))
            .or_else(|| {
                long_name.map(|mut n| {
                    while n.last() == Some(&0) {
                        n.pop();
                    }
                    n
                })
            })
            .unwrap_or_else(|| h.path_bytes().into_owned());
        let link = pax
            .as_deref()
            .and_then(|p| pax_value(p, b"linkpath").map(<[u8]>::to_vec))
            .or(long_link)
            .or_else(|| h.link_name_bytes().map(|l| l.into_owned()));
        Named { path, link, pax }
    }
}

/// What a member is, when it is one a backup may hold.
fn member_kind(t: tar::EntryType, link: Option<Vec<u8>>) -> Option<MemberKind> {
    if t.is_file() {
        Some(MemberKind::File)
    } else if t.is_dir() {
        Some(MemberKind::Dir)
    } else if t.is_symlink() {
        Some(MemberKind::Symlink(link.unwrap_or_default()))
    } else {
        None
    }
}

fn refusal(t: tar::EntryType) -> String {
    match t {
        tar::EntryType::Link => "a hard link".into(),
        tar::EntryType::Char | tar::EntryType::Block => "a device".into(),
        tar::EntryType::Fifo => "a FIFO".into(),
        tar::EntryType::GNUSparse => "a sparse file".into(),
        tar::EntryType::Continuous => "a contiguous file".into(),
        other => format!("a member of type {:?}", other.as_byte() as char),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &str, t: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(t);
        h.set_size(size);
        h.set_mode(0o600);
        h.set_mtime(1);
        // set_path refuses '..': write the name field by hand.
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        h
    }

    fn archive(members: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, t, data) in members {
            let h = header(p, *t, data.len() as u64);
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    type Got = (String, MemberKind, Vec<u8>);

    fn read(bytes: &[u8]) -> (Vec<Got>, Vec<Refused>) {
        let mut ok = Vec::new();
        let mut refused = Vec::new();
        for_each(bytes, |s| {
            match s {
                Step::Member(m, mut e) => {
                    let mut data = Vec::new();
                    e.read_to_end(&mut data)?;
                    ok.push((String::from_utf8_lossy(&m.path).into_owned(), m.kind, data));
                }
                Step::Refused(r) => refused.push(r),
            }
            Ok(true)
        })
        .unwrap();
        (ok, refused)
    }

    #[test]
    fn paths_are_plain_or_refused() {
        assert_eq!(plain_path(b"./base/1/1259").unwrap(), b"base/1/1259");
        assert_eq!(plain_path(b"base//1/").unwrap(), b"base/1");
        assert_eq!(plain_path(b"./").unwrap(), b"");
        for bad in [&b"/etc/passwd"[..], b"../x", b"base/../../x", b"a\0b"] {
            assert!(plain_path(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn hostile_members_are_refused_and_the_rest_read() {
        use tar::EntryType as T;
        let bytes = archive(&[
            ("./PG_VERSION", T::Regular, b"15\n"),
            ("base/", T::Directory, b""),
            ("../escape", T::Regular, b"x"),
            ("/etc/cron.d/x", T::Regular, b"x"),
            ("global/hard", T::Link, b""),
            ("dev/null", T::Char, b""),
            ("fifo", T::Fifo, b""),
            ("base/1/1259", T::Regular, &[7u8; 9000]),
        ]);
        let (ok, refused) = read(&bytes);
        let names: Vec<&str> = ok.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, vec!["PG_VERSION", "base", "base/1/1259"]);
        assert_eq!(ok[2].2.len(), 9000);
        let why: Vec<&str> = refused.iter().map(|r| r.why.as_str()).collect();
        assert_eq!(why, vec!["a path with '..'", "an absolute path", "a hard link", "a device", "a FIFO"]);
    }

    #[test]
    fn long_names_are_read_and_bounded() {
        let long = format!("base/1/{}", "x".repeat(200));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let (ok, _) = read(&bytes);
        assert_eq!(ok[0].0, long);
        assert_eq!(ok[0].2, b"abc");

        // A long-name member claiming a huge size is an error, not an
        // allocation.
        let mut h = header("././@LongLink", tar::EntryType::GNULongName, 1 << 40);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend(vec![b'a'; 4096]);
        let r = for_each(&bytes[..], |_| Ok(true));
        assert!(r.is_err());
    }

    #[test]
    fn pax_paths_apply_to_the_next_member() {
        let rec = |k: &str, v: &str| {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while len != body.len() + len.to_string().len() {
                len = body.len() + len.to_string().len();
            }
            format!("{len}{body}")
        };
        let pax = rec("path", "global/pg_control");
        let bytes = archive(&[
            ("PaxHeaders/x", tar::EntryType::XHeader, pax.as_bytes()),
            ("short", tar::EntryType::Regular, b"c"),
        ]);
        let (ok, _) = read(&bytes);
        assert_eq!(ok[0].0, "global/pg_control");
        assert_eq!(pax_value(b"5 a=\n", b"a"), Some(&b""[..]));
        assert_eq!(pax_value(b"99 a=b\n", b"a"), None);
    }
}
