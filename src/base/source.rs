//! Source files of a policy set: loading paths, spans and line/column mapping.
//!
//! Owns the only place where files are read for the front end. Directories expand
//! recursively to `*.policy` files taken in path order; a file under a `stdlib/std/`
//! directory is recognised as the stdlib module it names. Positions are byte offsets;
//! lines and columns (1-based, columns in characters) are derived only for output.

use std::path::{Path, PathBuf};

/// Index of a file in a [`SourceSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub(crate) fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    /// The smallest span covering both.
    pub(crate) fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// What a file is to the policy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRole {
    /// An ordinary policy file: its items join the set's namespace.
    User,
    /// A stdlib module, by qualified name (`std.llm`, `std.prelude`).
    Stdlib(String),
}

/// One source file's text and identity.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as shown to the user (and stored, relative, in artifacts).
    pub path: String,
    pub text: String,
    pub role: FileRole,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>, role: FileRole) -> SourceFile {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            path: path.into(),
            text,
            role,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self
            .line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line.max(1), column + 1)
    }
}

/// Every file of a policy set, in path order.
#[derive(Debug, Clone, Default)]
pub struct SourceSet {
    pub files: Vec<SourceFile>,
}

impl SourceSet {
    /// A set of one user file, for tests and embedding.
    pub fn from_text(path: &str, text: &str) -> SourceSet {
        let mut set = SourceSet::default();
        set.add(SourceFile::new(path, text, FileRole::User));
        set
    }

    pub fn add(&mut self, file: SourceFile) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(file);
        id
    }

    pub(crate) fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = FileId> + '_ {
        (0..self.files.len()).map(|i| FileId(u32::try_from(i).unwrap_or(u32::MAX)))
    }

    /// Text of a span, or `""` when it does not lie in the set.
    pub(crate) fn slice(&self, span: Span) -> &str {
        self.get(span.file)
            .and_then(|f| f.text.get(span.range()))
            .unwrap_or("")
    }
}

/// Why the inputs of a command could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: no such file or directory")]
    Missing { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid UTF-8")]
    NotUtf8 { path: String },
    #[error("no `.policy` files found in {paths}")]
    Empty { paths: String },
}

/// Expands files and directories (recursively, `*.policy`) into a sorted, de-duplicated
/// list. A named file is taken whatever its extension.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::Missing {
                path: path.display().to_string(),
            },
            _ => LoadError::Io {
                path: path.display().to_string(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            walk(path, &mut out)?;
        } else {
            out.push(path.clone());
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(LoadError::Empty {
            paths: names.join(", "),
        });
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |e| LoadError::Io {
        path: dir.display().to_string(),
        source: e,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "policy") {
            out.push(path);
        }
    }
    Ok(())
}

/// The stdlib module a path names, when it lies under a `stdlib/std/` directory:
/// `stdlib/std/llm.policy` is `std.llm`.
pub(crate) fn stdlib_module_of(path: &Path) -> Option<String> {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let at = parts
        .windows(2)
        .rposition(|w| matches!(w, [a, b] if a == "stdlib" && b == "std"))?;
    let rest = parts.get(at + 1..)?;
    let mut module: Vec<String> = rest.to_vec();
    let last = module.pop()?;
    module.push(last.strip_suffix(".policy")?.to_string());
    Some(module.join("."))
}

/// Reads files into a source set, naming stdlib modules by their path.
pub fn load_files(files: &[PathBuf]) -> Result<SourceSet, LoadError> {
    let mut set = SourceSet::default();
    for path in files {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 {
            path: path.display().to_string(),
        })?;
        let role = stdlib_module_of(path).map_or(FileRole::User, FileRole::Stdlib);
        set.add(SourceFile::new(path.display().to_string(), text, role));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let f = SourceFile::new("a", "ab\n€x\n", FileRole::User);
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(6), (2, 2)); // after the 3-byte '€'
        assert_eq!(f.line_col(8), (3, 1));
    }

    #[test]
    fn stdlib_paths_name_their_module() {
        assert_eq!(
            stdlib_module_of(Path::new("/x/stdlib/std/llm.policy")).as_deref(),
            Some("std.llm")
        );
        assert_eq!(stdlib_module_of(Path::new("examples/llm.policy")), None);
    }
}
