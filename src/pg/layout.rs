//! C struct layouts as data: `ControlFileData` and `CheckPoint` from
//! `src/include/catalog/pg_control.h`, written as ordered lists of fields
//! with their C types, the offsets computed by the platform's alignment
//! rules (x86_64, LP64: a scalar aligns to its size, a struct to its largest
//! member, and a struct's size is padded to its alignment).
//!
//! A new major whose structs change gets a new list: add, remove or widen
//! fields, and every offset follows. Field names are PostgreSQL's own, so a
//! list reads like the header it comes from.

/// A C type of pg_control's structs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CType {
    Bool,
    /// `int`, `enum` and `int32`.
    Int32,
    Uint32,
    Uint64,
    /// `int64`, `pg_time_t`.
    Int64,
    Double,
    /// `char[N]` or `uint8[N]`.
    Bytes(usize),
    Struct(&'static [Field]),
}

/// One field of a struct.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub ty: CType,
}

/// A field, for the lists below.
pub const fn f(name: &'static str, ty: CType) -> Field {
    Field { name, ty }
}

// PostgreSQL's typedefs.
pub const XLOG_REC_PTR: CType = CType::Uint64;
pub const TIME_LINE_ID: CType = CType::Uint32;
pub const TRANSACTION_ID: CType = CType::Uint32;
/// `FullTransactionId`: a struct around a uint64, aligned like it.
pub const FULL_TRANSACTION_ID: CType = CType::Uint64;
pub const OID: CType = CType::Uint32;
pub const MULTI_XACT_ID: CType = CType::Uint32;
pub const MULTI_XACT_OFFSET: CType = CType::Uint32;
pub const PG_TIME_T: CType = CType::Int64;
pub const PG_CRC32C: CType = CType::Uint32;

impl CType {
    pub const fn size(&self) -> usize {
        match self {
            CType::Bool => 1,
            CType::Int32 | CType::Uint32 => 4,
            CType::Uint64 | CType::Int64 | CType::Double => 8,
            CType::Bytes(n) => *n,
            CType::Struct(fields) => struct_size(fields),
        }
    }

    pub const fn align(&self) -> usize {
        match self {
            CType::Bool | CType::Bytes(_) => 1,
            CType::Int32 | CType::Uint32 => 4,
            CType::Uint64 | CType::Int64 | CType::Double => 8,
            CType::Struct(fields) => struct_align(fields),
        }
    }
}

const fn align_up(n: usize, a: usize) -> usize {
    n.div_ceil(a) * a
}

const fn struct_align(fields: &[Field]) -> usize {
    let mut a = 1;
    let mut i = 0;
    while i < fields.len() {
        let fa = fields[i].ty.align();
        if fa > a {
            a = fa;
        }
        i += 1;
    }
    a
}

const fn struct_size(fields: &[Field]) -> usize {
    let mut off = 0;
    let mut i = 0;
    while i < fields.len() {
        off = align_up(off, fields[i].ty.align()) + fields[i].ty.size();
        i += 1;
    }
    align_up(off, struct_align(fields))
}

/// A struct's fields flattened with their offsets: nested fields as
/// `checkPointCopy.redo`.
#[derive(Clone, Debug)]
pub struct Layout {
    fields: Vec<(String, usize, CType)>,
    size: usize,
}

impl Layout {
    pub fn of(fields: &[Field]) -> Layout {
        let mut out = Vec::new();
        flatten(fields, "", 0, &mut out);
        Layout { fields: out, size: struct_size(fields) }
    }

    /// Offset and type of a field (`name` or `struct.name`).
    pub fn field(&self, path: &str) -> Option<(usize, CType)> {
        self.fields.iter().find(|(p, _, _)| p == path).map(|(_, o, t)| (*o, *t))
    }

    pub fn offset(&self, path: &str) -> Option<usize> {
        self.field(path).map(|(o, _)| o)
    }

    /// `sizeof` the struct.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Every field, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, usize, CType)> {
        self.fields.iter().map(|(p, o, t)| (p.as_str(), *o, *t))
    }
}

fn flatten(fields: &[Field], prefix: &str, base: usize, out: &mut Vec<(String, usize, CType)>) {
    let mut off = 0;
    for fl in fields {
        off = align_up(off, fl.ty.align());
        let path = if prefix.is_empty() { fl.name.to_string() } else { format!("{prefix}.{}", fl.name) };
        out.push((path.clone(), base + off, fl.ty));
        if let CType::Struct(inner) = fl.ty {
            flatten(inner, &path, base + off, out);
        }
        off += fl.ty.size();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rules() {
        const S: &[Field] = &[f("a", CType::Bool), f("b", CType::Uint64), f("c", CType::Uint32)];
        let l = Layout::of(S);
        assert_eq!(l.offset("a"), Some(0));
        assert_eq!(l.offset("b"), Some(8));
        assert_eq!(l.offset("c"), Some(16));
        assert_eq!(l.size(), 24, "padded to the struct's alignment");
        const OUTER: &[Field] = &[f("x", CType::Uint32), f("s", CType::Struct(S)), f("y", CType::Bool)];
        let l = Layout::of(OUTER);
        assert_eq!(l.offset("s"), Some(8), "a struct aligns to its largest member");
        assert_eq!(l.offset("s.c"), Some(24));
        assert_eq!(l.offset("y"), Some(32));
        assert_eq!(l.size(), 40);
    }
}
