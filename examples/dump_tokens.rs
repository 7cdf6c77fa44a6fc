//! Dumps sentence and token-level vectors of CLINC150 for offline routing-quality research (numpy).
//!
//! ```sh
//! cargo run --release --example dump_tokens -- ../shared/data/clinc150/data_full.json OUT_DIR [SPLIT...]
//! ```
//!
//! For each split (default: train val test oos_train oos_val oos_test) writes, in OUT_DIR:
//! `{split}_sent.npy` (n, 384) f32 sentence vectors (as the router embeds them), `{split}_tok.npy` (T, 384)
//! f32 last-hidden-state vectors of every real token ([CLS]/[SEP] included, un-normalised),
//! `{split}_ids.npy` (T,) i32 token ids, `{split}_off.npy` (n + 1,) i64 offsets of each text's tokens, and
//! `{split}_labels.txt` (one intent per line, `oos` for out of scope). Needs the model in `models/`.

use std::io::Write;
use std::path::Path;

use semroute::embedding::{DeviceSpec, SentenceEncoder};

fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) -> std::io::Result<()> {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(bytes)?;
    f.flush()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 2,
        "usage: dump_tokens DATA_FULL_JSON OUT_DIR [SPLIT...]"
    );
    let data: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[0])?)?;
    let out = Path::new(&args[1]);
    std::fs::create_dir_all(out)?;
    let splits: Vec<String> = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        ["train", "val", "test", "oos_train", "oos_val", "oos_test"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let enc = SentenceEncoder::load(
        Path::new("models/all-MiniLM-L6-v2"),
        DeviceSpec::parse("cpu").map_err(anyhow::Error::msg)?,
        None,
    )?;
    let dim = enc.dim();
    for split in &splits {
        let rows = data[split.as_str()]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("no split {split}"))?;
        let texts: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
        let labels: Vec<&str> = rows.iter().map(|r| r[1].as_str().unwrap()).collect();
        // Batch texts of similar length together (less padding), then restore file order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut results = vec![None; texts.len()];
        let t0 = std::time::Instant::now();
        for chunk in order.chunks(64) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, e) in chunk.iter().zip(enc.embed_with_tokens(&batch)?) {
                results[i] = Some(e);
            }
        }
        let results: Vec<_> = results.into_iter().map(Option::unwrap).collect();
        let mut sent = Vec::with_capacity(texts.len() * dim);
        let mut tok = Vec::new();
        let mut ids: Vec<u8> = Vec::new();
        let mut off: Vec<u8> = 0i64.to_le_bytes().to_vec();
        let mut total = 0i64;
        for r in &results {
            sent.extend_from_slice(&r.sentence);
            for t in &r.tokens {
                tok.extend_from_slice(t);
            }
            for &id in &r.ids {
                ids.extend_from_slice(&(id as i32).to_le_bytes());
            }
            total += r.ids.len() as i64;
            off.extend_from_slice(&total.to_le_bytes());
        }
        let n = texts.len();
        write_npy(
            &out.join(format!("{split}_sent.npy")),
            "<f4",
            &[n, dim],
            &f32_bytes(&sent),
        )?;
        write_npy(
            &out.join(format!("{split}_tok.npy")),
            "<f4",
            &[total as usize, dim],
            &f32_bytes(&tok),
        )?;
        write_npy(
            &out.join(format!("{split}_ids.npy")),
            "<i4",
            &[total as usize],
            &ids,
        )?;
        write_npy(&out.join(format!("{split}_off.npy")), "<i8", &[n + 1], &off)?;
        std::fs::write(
            out.join(format!("{split}_labels.txt")),
            labels.join("\n") + "\n",
        )?;
        eprintln!(
            "{split}: {n} texts, {total} tokens, {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
