//! Reproducible random samples of a population, for auditors' testing: each row is ranked by
//! the SHA-256 of the seed and the row's text, and the `size` lowest ranks are drawn. The same
//! population, size and seed always give the same sample, on any machine, and anyone can
//! recompute it from the population file.

use sha2::Digest as _;

use super::Table;

/// Draws `size` rows (all rows if the population is smaller), keeping population order, with
/// a leading `sample_rank` column (1 = drawn first).
pub fn draw(population: &Table, size: usize, seed: u64) -> Table {
    let mut ranked: Vec<(String, usize)> = population
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut h = sha2::Sha256::new();
            h.update(seed.to_string().as_bytes());
            for cell in row {
                h.update([0x1f]);
                h.update(cell.as_bytes());
            }
            (hex::encode(h.finalize()), i)
        })
        .collect();
    // Identical rows tie on the hash; the row index breaks the tie deterministically.
    ranked.sort();
    let mut drawn: Vec<(usize, usize)> = ranked
        .into_iter()
        .take(size)
        .enumerate()
        .map(|(rank, (_, i))| (i, rank + 1))
        .collect();
    drawn.sort_unstable();
    let mut columns = vec!["sample_rank".to_string()];
    columns.extend(population.columns.iter().cloned());
    Table {
        columns,
        rows: drawn
            .into_iter()
            .map(|(i, rank)| {
                let mut r = vec![rank.to_string()];
                r.extend(population.rows[i].iter().cloned());
                r
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn population(n: usize) -> Table {
        Table {
            columns: vec!["id".into()],
            rows: (0..n).map(|i| vec![format!("row-{i}")]).collect(),
        }
    }

    #[test]
    fn samples_are_reproducible_and_depend_on_the_seed() {
        let p = population(1000);
        let a = draw(&p, 25, 7);
        assert_eq!(a.rows.len(), 25);
        assert_eq!(a.rows, draw(&p, 25, 7).rows);
        assert_ne!(a.rows, draw(&p, 25, 8).rows);
        let mut ranks: Vec<usize> = a.rows.iter().map(|r| r[0].parse().unwrap()).collect();
        ranks.sort_unstable();
        assert_eq!(ranks, (1..=25).collect::<Vec<_>>());
        // A larger sample with the same seed contains the smaller one.
        let b = draw(&p, 50, 7);
        assert!(a.rows.iter().all(|r| b.rows.iter().any(|s| s[1] == r[1])));
        assert_eq!(draw(&p, 5000, 1).rows.len(), 1000);
    }
}
