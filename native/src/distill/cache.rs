//! `distill.cache`: the teachers' logits on the training sentences, computed once and kept
//! on disk. A step then reads them instead of running the teacher (a forward pass, about a
//! third of a student's training step), and every run with the same teachers and data (a
//! sweep over `alpha` and `temperature`, a resumed run) computes them only once.
//!
//! One file per teacher and corpus, `DIR/<key>.teacher-outputs.safetensors`. The key is the
//! sha256 of the teacher's files (weights, config, tasks, tokenizer) and of the corpus's
//! encoded training inputs, so another teacher, another `max_len` or `casing`, or other data
//! make another file, never a stale read. Only the rows the loss reads are kept: one per
//! sentence for a sentence task, one per word (at its first word piece) for a token task.
//! The teachers run in evaluation mode, so a cached row is what the teacher says of that
//! sentence in any batch (up to the rounding of another padding).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use polytask_core::data::features::Encoded;
use polytask_core::io::safetensors;
use polytask_core::model::task::TaskKind;
use polytask_core::train::distill::DistillConfig;
use sha2::{Digest, Sha256};

use crate::files;

/// What the files say they are (metadata `format`).
const FORMAT: &str = "polytask-teacher-outputs/1";

/// The files of a saved model that decide what it outputs.
const TEACHER_FILES: [&str; 4] = [
    "config.json",
    "tokenizer.json",
    "tasks.json",
    "model.safetensors",
];

/// One task's logits over a corpus's training examples, in the rows its loss reads.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedTask {
    pub kind: TaskKind,
    pub labels: usize,
    /// `rows × labels`, example after example.
    values: Vec<f32>,
    /// Example `i`'s rows are `starts[i]..starts[i + 1]`.
    starts: Vec<usize>,
}

/// The rows of example `e` that a task's loss reads: one for a sentence task, one per word
/// that kept its first word piece for a token task.
pub fn rows_of(kind: TaskKind, e: &Encoded) -> usize {
    match kind {
        TaskKind::Sentence => 1,
        TaskKind::Token => e.first_pieces.iter().flatten().count(),
    }
}

/// The rows of a teacher's output for a batch (`logits`: `[rows, labels]` as
/// `MultiTaskModel::task_logits` lays them out, read back) that the cache keeps, per item.
pub fn keep_rows(
    kind: TaskKind,
    labels: usize,
    logits: &[f32],
    items: &[&Encoded],
    seq_len: usize,
) -> Vec<Vec<f32>> {
    let row = |r: usize| &logits[r * labels..(r + 1) * labels];
    items
        .iter()
        .enumerate()
        .map(|(b, e)| match kind {
            TaskKind::Sentence => row(b).to_vec(),
            TaskKind::Token => e
                .first_pieces
                .iter()
                .flatten()
                .flat_map(|&pos| row(b * seq_len + pos).iter().copied())
                .collect(),
        })
        .collect()
}

impl CachedTask {
    /// From each example's kept rows ([`keep_rows`]), in the corpus's order.
    pub fn new(kind: TaskKind, labels: usize, per_example: Vec<Vec<f32>>) -> Self {
        let mut starts = Vec::with_capacity(per_example.len() + 1);
        starts.push(0);
        let mut values = Vec::new();
        for rows in per_example {
            values.extend(rows);
            starts.push(values.len() / labels);
        }
        CachedTask {
            kind,
            labels,
            values,
            starts,
        }
    }

    /// The teacher's logits for the batch of examples `idx` (`items`, padded to `seq_len`
    /// pieces), laid out as the student's logits: `[batch, labels]` for a sentence task,
    /// `[batch × seq_len, labels]` for a token task with zeros in the rows the loss does not
    /// read (padding, special and continuation pieces).
    pub fn batch(
        &self,
        idx: &[usize],
        items: &[&Encoded],
        seq_len: usize,
        device: &Device,
    ) -> Tensor<2> {
        let l = self.labels;
        let rows = |i: usize| &self.values[self.starts[i] * l..self.starts[i + 1] * l];
        let (n, values) = match self.kind {
            TaskKind::Sentence => (
                idx.len(),
                idx.iter().flat_map(|&i| rows(i).iter().copied()).collect(),
            ),
            TaskKind::Token => {
                let mut out = vec![0.0; idx.len() * seq_len * l];
                for (b, (&i, e)) in idx.iter().zip(items).enumerate() {
                    let positions = e.first_pieces.iter().flatten();
                    for (row, &pos) in rows(i).chunks_exact(l).zip(positions) {
                        let at = (b * seq_len + pos) * l;
                        out[at..at + l].copy_from_slice(row);
                    }
                }
                (idx.len() * seq_len, out)
            }
        };
        Tensor::from_data(TensorData::new(values, [n, l]), device)
    }
}

/// The cache keeps logits only: refused with hidden or attention matches, which need the
/// teacher's states on every batch. The error names the fields.
pub fn check_config(config: &DistillConfig, dir: &Path) -> Result<()> {
    if config.needs_states() {
        bail!(
            "distill.cache = {}: the cache keeps the teachers' logits only, and \
             distill.hidden and distill.attention need the teacher's states on every \
             batch: remove distill.cache or the matches",
            dir.display()
        );
    }
    Ok(())
}

/// The sha256 of a saved model's files that decide its outputs (in `dir`, resolved).
pub fn fingerprint(dir: &Path) -> Result<Vec<u8>> {
    let mut hash = Sha256::new();
    for name in TEACHER_FILES {
        let path = dir.join(name);
        let mut f = std::fs::File::open(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        hash.update(name.as_bytes());
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
    }
    Ok(hash.finalize().to_vec())
}

/// The key of a teacher's outputs for `tasks` (`(name, the teacher's task index)`) on a
/// corpus's training `examples`: hex sha256 of the teacher's fingerprint, the tasks and
/// every input the teacher reads.
pub fn key(teacher: &[u8], tasks: &[(String, usize)], examples: &[Encoded]) -> String {
    let mut hash = Sha256::new();
    hash.update(FORMAT.as_bytes());
    hash.update(teacher);
    for (name, index) in tasks {
        hash.update(format!("{name}={index};").as_bytes());
    }
    let words = |h: &mut Sha256, v: &[u32]| {
        h.update((v.len() as u64).to_le_bytes());
        for x in v {
            h.update(x.to_le_bytes());
        }
    };
    for e in examples {
        words(&mut hash, &e.encoding.ids);
        words(&mut hash, &e.encoding.type_ids);
        words(&mut hash, &e.encoding.shapes);
        let firsts: Vec<u32> = e
            .first_pieces
            .iter()
            .map(|p| p.map_or(u32::MAX, |p| p as u32))
            .collect();
        words(&mut hash, &firsts);
    }
    format!("{:x}", hash.finalize())
}

/// The file of `key` in the cache directory `dir`.
pub fn path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{}.teacher-outputs.safetensors", &key[..32]))
}

/// Reads the cached `tasks` (`(name, kind, labels)`) of `key` over `examples` from `path`;
/// `None` when there is no such file. A file that is there but is not this cache (another
/// key, a damaged or foreign file) is an error naming it: it is never replaced.
pub fn read(
    path: &Path,
    key: &str,
    tasks: &[(String, TaskKind, usize)],
    examples: &[Encoded],
) -> Result<Option<Vec<CachedTask>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let name = path.display().to_string();
    let refuse = |why: String| {
        anyhow::anyhow!(
            "{name}: {why}; it is not the teacher-output cache this run needs, and core-train \
             does not replace a file it cannot recognise: move it away (the outputs are then \
             computed again)"
        )
    };
    let parsed = safetensors::parse(&bytes, &name).map_err(|e| refuse(e.to_string()))?;
    let meta = |k: &str| parsed.metadata.get(k).map(String::as_str);
    if meta("format") != Some(FORMAT) {
        return Err(refuse(format!(
            "its metadata says format {:?}, not {FORMAT:?}",
            meta("format").unwrap_or("(none)")
        )));
    }
    if meta("key") != Some(key) {
        return Err(refuse(format!(
            "it holds the outputs of key {}, not {key}",
            meta("key").unwrap_or("(none)")
        )));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for (task, kind, labels) in tasks {
        let starts = std::iter::once(0)
            .chain(examples.iter().scan(0, |acc, e| {
                *acc += rows_of(*kind, e);
                Some(*acc)
            }))
            .collect::<Vec<usize>>();
        let rows = *starts.last().expect("one start at least");
        let Some(info) = parsed.tensors.get(task) else {
            return Err(refuse(format!("it has no tensor {task:?}")));
        };
        if info.dtype != "F32" || info.shape != [rows, *labels] {
            return Err(refuse(format!(
                "tensor {task:?} is {} {:?}, expected F32 [{rows}, {labels}]",
                info.dtype, info.shape
            )));
        }
        let values = safetensors::f32_values(parsed.bytes(info));
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(refuse(format!(
                "tensor {task:?} holds a non-finite value at {bad}"
            )));
        }
        out.push(CachedTask {
            kind: *kind,
            labels: *labels,
            values,
            starts,
        });
    }
    Ok(Some(out))
}

/// Writes `tasks` under `key` to `path` (atomically; the directory is made if needed).
/// `teacher` is recorded for people reading the file.
pub fn write(path: &Path, key: &str, tasks: &[(&str, &CachedTask)], teacher: &Path) -> Result<()> {
    let metadata = [
        ("format", FORMAT.to_string()),
        ("key", key.to_string()),
        ("teacher", teacher.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let entries: Vec<(String, Vec<usize>, Vec<f32>)> = tasks
        .iter()
        .map(|(name, t)| {
            let rows = t.values.len() / t.labels;
            (name.to_string(), vec![rows, t.labels], t.values.clone())
        })
        .collect();
    let bytes = safetensors::write_f32(&entries, &metadata)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    if path.exists() {
        bail!(
            "{}: appeared while the teacher's outputs were computed; it is left as it is",
            path.display()
        );
    }
    files::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polytask_core::data::tokenizer::Encoding;

    /// An example of `len` pieces whose words start at `firsts`.
    fn example(len: usize, firsts: &[Option<usize>]) -> Encoded {
        Encoded {
            encoding: Encoding {
                ids: (0..len as u32).collect(),
                type_ids: vec![0; len],
                word_ids: vec![None; len],
                offsets: vec![(0, 0); len],
                shapes: vec![0; len],
                truncated: false,
            },
            sentence_label: None,
            word_tags: Some(vec![0; firsts.len()]),
            first_pieces: firsts.to_vec(),
        }
    }

    /// Logits whose every value says where it came from: row r, label c → r + c / 10.
    fn logits(rows: usize, labels: usize) -> Vec<f32> {
        (0..rows * labels)
            .map(|v| (v / labels) as f32 + (v % labels) as f32 / 10.0)
            .collect()
    }

    #[test]
    fn a_batch_from_the_cache_has_the_teachers_rows_where_the_loss_reads() {
        let d = Device::flex();
        // Word 2 of the second example was truncated away (no first piece).
        let examples = [
            example(4, &[Some(1), Some(2)]),
            example(6, &[Some(1), Some(3), None]),
        ];
        let items: Vec<&Encoded> = examples.iter().collect();
        let (labels, seq) = (3, 6);
        let token = keep_rows(
            TaskKind::Token,
            labels,
            &logits(2 * seq, labels),
            &items,
            seq,
        );
        assert_eq!(token[0].len(), 2 * labels);
        assert_eq!(token[1].len(), 2 * labels);
        let cached = CachedTask::new(TaskKind::Token, labels, token);
        // In another batch, in another order and padding: the second example alone.
        let got = cached
            .batch(&[1], &[&examples[1]], 6, &d)
            .try_into_vec_as::<f32>()
            .unwrap();
        let want = logits(2 * seq, labels);
        for pos in 0..6 {
            let row = &got[pos * labels..(pos + 1) * labels];
            if pos == 1 || pos == 3 {
                assert_eq!(row, &want[(seq + pos) * labels..(seq + pos + 1) * labels]);
            } else {
                assert_eq!(row, &[0.0; 3], "position {pos} is not read by the loss");
            }
        }
        let sentence = keep_rows(TaskKind::Sentence, 2, &logits(2, 2), &items, seq);
        let cached = CachedTask::new(TaskKind::Sentence, 2, sentence);
        let got = cached.batch(&[1, 0], &[&examples[1], &examples[0]], 6, &d);
        assert_eq!(got.dims(), [2, 2]);
        assert_eq!(
            got.try_into_vec_as::<f32>().unwrap(),
            vec![1.0, 1.1, 0.0, 0.1]
        );
    }

    #[test]
    fn the_key_changes_with_the_teacher_the_tasks_and_every_input() {
        let examples = vec![example(4, &[Some(1), Some(2)])];
        let tasks = vec![("ner".to_string(), 0)];
        let base = key(b"teacher", &tasks, &examples);
        assert_eq!(base, key(b"teacher", &tasks, &examples));
        assert_ne!(base, key(b"another", &tasks, &examples));
        assert_ne!(base, key(b"teacher", &[("ner".to_string(), 1)], &examples));
        let mut other = examples.clone();
        other[0].encoding.shapes[2] = 3;
        assert_ne!(base, key(b"teacher", &tasks, &other));
        let mut other = examples.clone();
        other[0].first_pieces[1] = Some(3);
        assert_ne!(base, key(b"teacher", &tasks, &other));
    }

    #[test]
    fn a_written_cache_reads_back_and_anything_else_is_refused_by_name() {
        let root = tempfile::tempdir().unwrap();
        let examples = vec![
            example(4, &[Some(1), Some(2)]),
            example(5, &[Some(1), None]),
        ];
        let items: Vec<&Encoded> = examples.iter().collect();
        let rows = keep_rows(TaskKind::Token, 3, &logits(10, 3), &items, 5);
        let task = CachedTask::new(TaskKind::Token, 3, rows);
        let k = key(b"teacher", &[("ner".to_string(), 0)], &examples);
        let path = path(&root.path().join("cache"), &k);
        let wanted = vec![("ner".to_string(), TaskKind::Token, 3)];
        assert_eq!(read(&path, &k, &wanted, &examples).unwrap(), None);
        write(&path, &k, &[("ner", &task)], Path::new("t/best")).unwrap();
        let back = read(&path, &k, &wanted, &examples).unwrap().unwrap();
        assert_eq!(back, vec![task.clone()]);
        // Written once: a second write does not replace it.
        assert!(write(&path, &k, &[("ner", &task)], Path::new("t/best")).is_err());

        let refused = |k: &str, wanted: &[(String, TaskKind, usize)], examples: &[Encoded]| {
            let e = read(&path, k, wanted, examples).unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(e.contains("move it away"), "{e}");
            e
        };
        let other = "0".repeat(64);
        assert!(refused(&other, &wanted, &examples).contains("key"));
        let labels = vec![("ner".to_string(), TaskKind::Token, 4)];
        assert!(refused(&k, &labels, &examples).contains("expected F32 [3, 4]"));
        let fewer = vec![examples[0].clone()];
        assert!(refused(&k, &wanted, &fewer).contains("expected F32 [2, 3]"));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        refused(&k, &wanted, &examples);
        std::fs::write(&path, b"notes").unwrap();
        refused(&k, &wanted, &examples);
        assert_eq!(std::fs::read(&path).unwrap(), b"notes");
    }
}
