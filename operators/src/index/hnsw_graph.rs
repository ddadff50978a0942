//! An HNSW graph held in flat arrays, and its search.
//!
//! Lance keeps a loaded HNSW graph as Arrow list arrays and searches it through generic graph and
//! storage traits, scoring quantized codes; hnswlib, on the same graph shape, answers three to seven
//! times as many queries a second (`benchmarks/README.md`). [`HnswGraph`] holds the same graph in
//! flat arrays (the bottom level in one fixed-stride block per node, the upper levels as
//! adjacency lists between positions in the level) and [`HnswGraph::search`] runs the search of
//! the HNSW paper (the upper levels descended, then a beam of width `ef` on the bottom level)
//! over a caller's scoring function, as hnswlib does: a visited set cleared by generation and the
//! beam (one sorted list, as DiskANN's), both kept between searches, and the next candidate's
//! list, the visited marks and the neighbours' vectors prefetched before they are needed. Each
//! level runs the same beam search ([`LevelView`] is what it walks); the upper levels' beam may
//! be wider than the paper's greedy one (FAISS's `upper_beam`), which carries several routes
//! down.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::UInt32Type;
use lance_index::vector::graph::NEIGHBORS_FIELD;
use lance_index::vector::hnsw::builder::HNSW_METADATA_KEY;
use lance_index::vector::hnsw::{HnswMetadata, VECTOR_ID_FIELD};

use crate::error::OperatorError;
use crate::index::huge_pages::HugePageArray;

/// One level's edges: node `i`'s neighbours are `targets[offsets[i]..offsets[i + 1]]`, where `i`
/// is the node's position in the level.
#[derive(Debug)]
struct Level {
    offsets: Vec<u32>,
    targets: Vec<u32>,
    /// The level's `(node id, position)` pairs sorted by id; empty on the bottom level, where
    /// the position is the node id.
    positions: Vec<(u32, u32)>,
}

/// `node`'s position among `positions`, `(node id, position)` pairs sorted by id.
fn position_of(positions: &[(u32, u32)], node: u32) -> Option<u32> {
    positions
        .binary_search_by_key(&node, |(id, _)| *id)
        .ok()
        .map(|i| positions[i].1)
}

impl Level {
    /// Node `node`'s position in the level, if it is in it.
    fn position(&self, node: u32) -> Option<u32> {
        if self.positions.is_empty() {
            return Some(node);
        }
        position_of(&self.positions, node)
    }

    fn neighbors(&self, node: u32) -> &[u32] {
        match self.position(node) {
            Some(p) => {
                let p = p as usize;
                &self.targets[self.offsets[p] as usize..self.offsets[p + 1] as usize]
            }
            None => &[],
        }
    }
}

/// The bottom level, in one block of `stride` values per node: the neighbours, then
/// [`NO_NEIGHBOR`] up to the stride. A node's list is one multiplication away, so the list of the
/// candidate to be expanded next can be prefetched while the current one is; with no count in
/// the block, Lance's bottom level of `m = 16` (at most 32 neighbours) takes exactly two cache
/// lines a node.
#[derive(Debug, Default)]
struct Bottom {
    /// The number of nodes.
    len: usize,
    stride: usize,
    blocks: HugePageArray<u32>,
}

/// What fills a bottom-level block past a node's last neighbour.
const NO_NEIGHBOR: u32 = u32::MAX;

impl Bottom {
    fn new(level: &Level, len: usize) -> Self {
        let stride = (0..len as u32)
            .map(|node| level.neighbors(node).len())
            .max()
            .unwrap_or(0);
        let mut blocks = HugePageArray::zeroed(len * stride);
        for (node, block) in blocks.chunks_exact_mut(stride.max(1)).enumerate() {
            let neighbors = level.neighbors(node as u32);
            block[..neighbors.len()].copy_from_slice(neighbors);
            block[neighbors.len()..].fill(NO_NEIGHBOR);
        }
        Self {
            len,
            stride,
            blocks,
        }
    }

    #[inline]
    fn block(&self, node: u32) -> &[u32] {
        let start = node as usize * self.stride;
        &self.blocks[start..start + self.stride]
    }

    #[inline]
    fn neighbors(&self, node: u32) -> &[u32] {
        let block = self.block(node);
        let len = block
            .iter()
            .position(|n| *n == NO_NEIGHBOR)
            .unwrap_or(block.len());
        &block[..len]
    }
}

/// A level as its search walks it: nodes `0..len()` (positions in the level), their
/// neighbours, and the node id of each.
trait LevelView {
    fn len(&self) -> usize;
    fn neighbors(&self, node: u32) -> &[u32];
    fn id(&self, node: u32) -> u32;
    /// Asks for `node`'s neighbours ahead of their use.
    fn prefetch_neighbors(&self, _node: u32) {}
}

impl LevelView for Bottom {
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn neighbors(&self, node: u32) -> &[u32] {
        Bottom::neighbors(self, node)
    }

    #[inline]
    fn id(&self, node: u32) -> u32 {
        node
    }

    #[inline]
    fn prefetch_neighbors(&self, node: u32) {
        prefetch(self.block(node));
    }
}

/// A level above the bottom one, its edges between positions in the level, so that the descent
/// looks a node up only on entering the level.
#[derive(Debug)]
struct Upper {
    /// The node at each position.
    ids: Vec<u32>,
    /// The position `p`'s neighbours are `targets[offsets[p]..offsets[p + 1]]`.
    offsets: Vec<u32>,
    targets: Vec<u32>,
    /// The level's `(node id, position)` pairs sorted by id.
    positions: Vec<(u32, u32)>,
}

impl Upper {
    /// `level` with its edges turned into positions; an edge to a node not in the level (which
    /// HNSW never makes) is dropped.
    fn new(level: Level) -> Self {
        let mut ids = vec![0; level.positions.len()];
        for (id, position) in &level.positions {
            ids[*position as usize] = *id;
        }
        let mut offsets = Vec::with_capacity(ids.len() + 1);
        let mut targets = Vec::with_capacity(level.targets.len());
        offsets.push(0);
        for id in &ids {
            targets.extend(
                level
                    .neighbors(*id)
                    .iter()
                    .filter_map(|n| level.position(*n)),
            );
            offsets.push(targets.len() as u32);
        }
        Self {
            ids,
            offsets,
            targets,
            positions: level.positions,
        }
    }

    fn position(&self, node: u32) -> Option<u32> {
        position_of(&self.positions, node)
    }

    fn size_bytes(&self) -> usize {
        (self.ids.len() + self.offsets.len() + self.targets.len()) * 4 + self.positions.len() * 8
    }
}

impl LevelView for Upper {
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn neighbors(&self, position: u32) -> &[u32] {
        let p = position as usize;
        &self.targets[self.offsets[p] as usize..self.offsets[p + 1] as usize]
    }

    fn id(&self, position: u32) -> u32 {
        self.ids[position as usize]
    }
}

/// An HNSW graph over nodes `0..len`.
#[derive(Debug)]
pub struct HnswGraph {
    bottom: Bottom,
    /// The levels above the bottom one, lowest first.
    upper: Vec<Upper>,
    entry_point: u32,
    len: usize,
}

/// A node of a level's beam: its score (smaller is nearer), whether its neighbours have been
/// scored, and whether it may be in the answer ([`HnswGraph::search_admitting`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct BeamEntry {
    score: f32,
    node: u32,
    expanded: bool,
    admitted: bool,
}

impl BeamEntry {
    /// How `self` ranks against a node `node` scored `score`: by score, then node.
    #[inline]
    fn rank(&self, score: f32, node: u32) -> std::cmp::Ordering {
        self.score.total_cmp(&score).then(self.node.cmp(&node))
    }
}

impl HnswGraph {
    /// The graph of a partition of a Lance HNSW index, from the batch Lance stores it as
    /// (`IvfSubIndex::to_batch`): rows of `__vector_id` and `__neighbors`, the levels
    /// concatenated bottom first as the `lance:hnsw` metadata's `level_offsets` say.
    pub fn from_lance(batch: &RecordBatch) -> Result<Self, OperatorError> {
        let malformed = |what: String| OperatorError::MalformedIndex(what);
        if batch.num_rows() == 0 {
            return Ok(Self {
                bottom: Bottom::default(),
                upper: Vec::new(),
                entry_point: 0,
                len: 0,
            });
        }
        let metadata = batch
            .schema_ref()
            .metadata()
            .get(HNSW_METADATA_KEY)
            .ok_or_else(|| {
                malformed(format!(
                    "the HNSW graph has no {HNSW_METADATA_KEY} metadata"
                ))
            })?;
        let metadata: HnswMetadata = serde_json::from_str(metadata)
            .map_err(|e| malformed(format!("the HNSW graph's metadata does not parse: {e}")))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| malformed(format!("the HNSW graph has no {name} column")))
        };
        let ids = column(VECTOR_ID_FIELD.name())?
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| malformed("the HNSW graph's node ids are not u32".into()))?
            .clone();
        let neighbors = column(NEIGHBORS_FIELD.name())?
            .as_list_opt::<i32>()
            .ok_or_else(|| malformed("the HNSW graph's neighbours are not a list".into()))?
            .clone();
        let neighbor_ids = neighbors
            .values()
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| malformed("the HNSW graph's neighbour ids are not u32".into()))?
            .clone();
        let mut levels = Vec::new();
        let mut len = 0;
        for bounds in metadata.level_offsets.windows(2) {
            let (start, end) = (bounds[0], bounds[1]);
            if start == end {
                break;
            }
            if start > end || end > batch.num_rows() {
                return Err(malformed(format!(
                    "the HNSW graph's level [{start}, {end}) is outside its {} rows",
                    batch.num_rows()
                )));
            }
            let level_ids = &ids.values()[start..end];
            let positions = if levels.is_empty() {
                len = end - start;
                if let Some((row, id)) = level_ids
                    .iter()
                    .enumerate()
                    .find(|(row, id)| **id as usize != *row)
                {
                    return Err(malformed(format!(
                        "the HNSW graph's bottom level has node {id} at row {row}"
                    )));
                }
                Vec::new()
            } else {
                if let Some(id) = level_ids.iter().find(|id| **id as usize >= len) {
                    return Err(malformed(format!(
                        "the HNSW graph's level {} has node {id}, outside its {len} nodes",
                        levels.len()
                    )));
                }
                let mut positions: Vec<(u32, u32)> = level_ids
                    .iter()
                    .enumerate()
                    .map(|(position, id)| (*id, position as u32))
                    .collect();
                positions.sort_unstable();
                positions
            };
            let offsets = &neighbors.value_offsets()[start..=end];
            let mut targets = Vec::with_capacity((offsets[end - start] - offsets[0]) as usize);
            let mut level_offsets = Vec::with_capacity(end - start + 1);
            level_offsets.push(0);
            for (row, bounds) in offsets.windows(2).enumerate() {
                if neighbors.is_valid(start + row) {
                    let edges = &neighbor_ids.values()[bounds[0] as usize..bounds[1] as usize];
                    // An edge to a node outside the graph cannot be scored; Lance drops them
                    // on load too.
                    targets.extend(edges.iter().filter(|n| (**n as usize) < len));
                }
                level_offsets.push(targets.len() as u32);
            }
            levels.push(Level {
                offsets: level_offsets,
                targets,
                positions,
            });
        }
        if metadata.entry_point as usize >= len.max(1) {
            return Err(malformed(format!(
                "the HNSW graph's entry point {} is not one of its {len} nodes",
                metadata.entry_point
            )));
        }
        let mut levels = levels.into_iter();
        let bottom = levels
            .next()
            .map(|level| Bottom::new(&level, len))
            .unwrap_or_default();
        Ok(Self {
            bottom,
            upper: levels.map(Upper::new).collect(),
            entry_point: metadata.entry_point,
            len,
        })
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the graph holds.
    pub fn size_bytes(&self) -> usize {
        self.bottom.blocks.size_bytes() + self.upper.iter().map(Upper::size_bytes).sum::<usize>()
    }

    /// The (up to) `ef` nodes nearest the query, nearest first (ties by node), by `score(node)`
    /// (smaller is nearer; the query is the scoring function's).
    ///
    /// Each level above the bottom one is searched with a beam of `upper_beam` nodes, from the
    /// nodes the level above ended with: with 1, the HNSW paper's greedy descent; wider, as
    /// FAISS's `upper_beam`, the descent carries several routes down and is less often caught in
    /// the wrong region of clustered data. The bottom level is searched with a beam of `ef`.
    /// `prefetch_node(node)` is called for each node about to be scored, before the batch of
    /// them is. `scratch` is reused between searches, so that a search allocates only its
    /// answer.
    pub fn search(
        &self,
        ef: usize,
        upper_beam: usize,
        scratch: &mut SearchScratch,
        score: impl FnMut(u32) -> f32,
        prefetch_node: impl Fn(u32),
    ) -> Vec<(f32, u32)> {
        self.search_admitting(ef, upper_beam, scratch, score, prefetch_node, |_| true)
    }

    /// As [`Self::search`], but the answer holds only nodes `admit` admits (rows that match a
    /// filter and are not deleted): the (up to) `ef` admitted nodes nearest the query.
    ///
    /// The search still walks through the nodes it does not admit, so the graph stays as
    /// connected as it was built (as hnswlib's filtered search and pgvector's iterative scans
    /// do): the beam keeps `ef` admitted nodes and, among them, the others nearer than the
    /// farthest of those, which are expanded like any other. The fewer nodes are admitted, the
    /// more the beam holds; it is bounded at [`MAX_BEAM_PER_ADMITTED`] times `ef`, past which
    /// the farthest node not admitted leaves it. A caller with few admitted nodes scores them
    /// all instead.
    pub fn search_admitting(
        &self,
        ef: usize,
        upper_beam: usize,
        scratch: &mut SearchScratch,
        mut score: impl FnMut(u32) -> f32,
        prefetch_node: impl Fn(u32),
        admit: impl Fn(u32) -> bool,
    ) -> Vec<(f32, u32)> {
        if self.is_empty() || ef == 0 {
            return Vec::new();
        }
        let entry = self.entry_point;
        scratch.beam.clear();
        scratch.beam.push(BeamEntry {
            score: score(entry),
            node: entry,
            expanded: false,
            admitted: true,
        });
        let admit_all = |_: u32| true;
        for level in self.upper.iter().rev() {
            // The level's search runs between positions in the level; a level none of the nodes
            // so far is in (which HNSW never makes) is passed over.
            if scratch.relabel(|node| level.position(node)) {
                let width = upper_beam.max(1);
                scratch.search_level(level, width, &mut score, &prefetch_node, &admit_all);
                scratch.relabel(|p| Some(level.id(p)));
            }
        }
        scratch.search_level(&self.bottom, ef, &mut score, &prefetch_node, &admit);
        scratch
            .beam
            .iter()
            .filter(|e| e.admitted)
            .map(|e| (e.score, e.node))
            .collect()
    }
}

/// How many nodes a beam of width `ef` holds at most, as a multiple of `ef`, when few of the
/// nodes are admitted ([`HnswGraph::search_admitting`]).
pub(crate) const MAX_BEAM_PER_ADMITTED: usize = 128;

/// What a search needs besides the graph (the visited set, the beam, the neighbours to score),
/// kept between searches.
#[derive(Debug, Default)]
pub struct SearchScratch {
    visited: VisitedSet,
    /// The beam: the nearest nodes a level's search has found, at most its width, nearest first
    /// (ties by node). A level's search starts from it and ends with it.
    beam: Vec<BeamEntry>,
    /// The neighbours of the node expanded that had not been visited (positions in the level).
    fresh: Vec<u32>,
    /// The beam renamed into the next level, while it is built.
    renamed: Vec<BeamEntry>,
}

impl SearchScratch {
    /// Renames the nodes in the beam by `rename`, leaving out those it maps to `None`; if it
    /// maps all of them to `None`, leaves the beam as it was. Whether any node was renamed.
    fn relabel(&mut self, rename: impl Fn(u32) -> Option<u32>) -> bool {
        self.renamed.clear();
        self.renamed.extend(
            self.beam
                .iter()
                .filter_map(|e| rename(e.node).map(|node| BeamEntry { node, ..*e })),
        );
        if self.renamed.is_empty() {
            return false;
        }
        // Renaming may reorder nodes of equal score.
        self.renamed
            .sort_unstable_by(|a, b| a.rank(b.score, b.node));
        std::mem::swap(&mut self.beam, &mut self.renamed);
        true
    }

    /// The beam search of `level` (the HNSW paper's algorithm 2), from the nodes in the beam,
    /// leaving there the `width` nearest it found that `admit` admits, and those it does not
    /// admit that are nearer than the farthest of them.
    ///
    /// The beam is one sorted list, as DiskANN's search list: the node expanded next is the
    /// nearest not yet expanded, and the search ends when every node in the beam has been. That
    /// is the paper's pair of heaps (candidates, nearest) without the candidates that fell out
    /// of the nearest, which the paper's search stops at rather than expands. When every node is
    /// admitted, the beam is exactly the paper's nearest `width`.
    fn search_level(
        &mut self,
        level: &impl LevelView,
        width: usize,
        score: &mut impl FnMut(u32) -> f32,
        prefetch_node: &impl Fn(u32),
        admit: &impl Fn(u32) -> bool,
    ) {
        let Self {
            visited,
            beam,
            fresh,
            ..
        } = self;
        visited.start(level.len());
        let mut admitted = 0;
        for entry in beam.iter_mut() {
            visited.insert(entry.node);
            entry.expanded = false;
            entry.admitted = admit(level.id(entry.node));
            admitted += usize::from(entry.admitted);
        }
        trim(beam, &mut admitted, width);
        let most = width.saturating_mul(MAX_BEAM_PER_ADMITTED).max(width + 1);
        let mut next = 0;
        while next < beam.len() {
            beam[next].expanded = true;
            let node = beam[next].node;
            if let Some(after) = beam[next + 1..].iter().find(|e| !e.expanded) {
                level.prefetch_neighbors(after.node);
            }
            let neighbors = level.neighbors(node);
            neighbors.iter().for_each(|n| visited.prefetch(*n));
            fresh.clear();
            fresh.extend(neighbors.iter().copied().filter(|n| visited.insert(*n)));
            fresh.iter().for_each(|n| prefetch_node(level.id(*n)));
            for &n in fresh.iter() {
                let id = level.id(n);
                let s = score(id);
                // As the paper's search: a node enters a full beam only if it is strictly nearer
                // than the beam's farthest (which, once full, is admitted).
                if admitted >= width
                    && beam
                        .last()
                        .is_some_and(|worst| s.total_cmp(&worst.score).is_ge())
                {
                    continue;
                }
                let is_admitted = admit(id);
                let at = beam.partition_point(|e| e.rank(s, n).is_lt());
                beam.insert(
                    at,
                    BeamEntry {
                        score: s,
                        node: n,
                        expanded: false,
                        admitted: is_admitted,
                    },
                );
                admitted += usize::from(is_admitted);
                trim(beam, &mut admitted, width);
                next = next.min(at);
                if beam.len() > most {
                    // The farthest node not admitted leaves (there is one: at most `width` are).
                    if let Some(drop) = beam.iter().rposition(|e| !e.admitted) {
                        beam.remove(drop);
                        next = next.min(drop);
                    }
                }
            }
            while next < beam.len() && beam[next].expanded {
                next += 1;
            }
        }
    }
}

/// Cuts `beam` (sorted, `admitted` of its entries admitted) after its `width`-th admitted
/// entry, keeping `admitted` up to date.
#[inline]
fn trim(beam: &mut Vec<BeamEntry>, admitted: &mut usize, width: usize) {
    if *admitted < width {
        return;
    }
    while *admitted > width {
        if beam.pop().is_some_and(|e| e.admitted) {
            *admitted -= 1;
        }
    }
    while beam.last().is_some_and(|e| !e.admitted) {
        beam.pop();
    }
}

/// The nodes a search has visited, cleared between searches in O(1) by a generation count.
#[derive(Debug, Default)]
struct VisitedSet {
    marks: HugePageArray<u16>,
    generation: u16,
}

impl VisitedSet {
    /// Starts a search of `len` nodes with nothing visited.
    fn start(&mut self, len: usize) {
        if self.marks.len() < len {
            self.marks = HugePageArray::zeroed(len);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill(0);
            self.generation = 1;
        }
    }

    /// Asks the CPU to fetch `node`'s mark into its caches.
    #[inline]
    fn prefetch(&self, node: u32) {
        if let Some(mark) = self.marks.get(node as usize) {
            prefetch(std::slice::from_ref(mark));
        }
    }

    /// Marks `node` visited; whether it was not before.
    #[inline]
    fn insert(&mut self, node: u32) -> bool {
        let mark = &mut self.marks[node as usize];
        let fresh = *mark != self.generation;
        *mark = self.generation;
        fresh
    }
}

/// Asks the CPU to fetch every cache line of `values` into its caches.
#[inline]
pub(crate) fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = values.as_ptr() as *const i8;
        for line in (0..std::mem::size_of_val(values)).step_by(64) {
            // SAFETY: a prefetch never faults, and `wrapping_add` makes no out-of-bounds pointer.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap as Map;
    use std::sync::Arc;

    use datafusion::arrow::array::{ListArray, UInt32Array};
    use datafusion::arrow::datatypes::Schema;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A Lance-shaped graph batch of `levels` (each a list of (node, neighbours)), bottom first.
    fn lance_batch(levels: &[Vec<(u32, Vec<u32>)>], entry_point: u32) -> RecordBatch {
        let mut offsets = vec![0];
        let rows: Vec<&(u32, Vec<u32>)> = levels.iter().flatten().collect();
        for level in levels {
            offsets.push(offsets.last().unwrap() + level.len());
        }
        let metadata = HnswMetadata {
            entry_point,
            params: Default::default(),
            level_offsets: offsets,
        };
        let schema = Schema::new(vec![VECTOR_ID_FIELD.clone(), NEIGHBORS_FIELD.clone()])
            .with_metadata(Map::from([(
                HNSW_METADATA_KEY.to_string(),
                serde_json::to_string(&metadata).unwrap(),
            )]));
        let ids = UInt32Array::from_iter_values(rows.iter().map(|(id, _)| *id));
        let neighbors = ListArray::from_iter_primitive::<UInt32Type, _, _>(
            rows.iter()
                .map(|(_, n)| Some(n.iter().map(|v| Some(*v)).collect::<Vec<_>>())),
        );
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ids), Arc::new(neighbors)]).unwrap()
    }

    /// A path over the points `0..n` (node `i` at `i`), each node linked to the two on either
    /// side: a graph whose only routes between far nodes run through the nodes between them.
    fn path(n: u32) -> HnswGraph {
        let bottom = (0..n)
            .map(|i| {
                let near = [i.wrapping_sub(2), i.wrapping_sub(1), i + 1, i + 2];
                (i, near.into_iter().filter(|j| *j < n).collect())
            })
            .collect();
        HnswGraph::from_lance(&lance_batch(&[bottom], n / 2)).unwrap()
    }

    #[test]
    fn a_search_admitting_some_nodes_walks_through_the_others_to_them() {
        let graph = path(100);
        let mut scratch = SearchScratch::default();
        let query = 3.3f32;
        let score = |i: u32| (i as f32 - query).abs();
        // A tenth of the nodes admitted: reached from the entry point (50) only through nodes
        // that are not.
        let tenth = |i: u32| i.is_multiple_of(10);
        let found = graph.search_admitting(3, 1, &mut scratch, score, |_| {}, tenth);
        let nodes: Vec<u32> = found.iter().map(|(_, n)| *n).collect();
        assert_eq!(nodes, [0, 10, 20]);
        assert_eq!(found[0].0, score(0));
        // Fewer admitted nodes than the beam: every one of them, nearest first.
        let two = |i: u32| i == 97 || i == 1;
        let found = graph.search_admitting(5, 1, &mut scratch, score, |_| {}, two);
        assert_eq!(found.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [1, 97]);
        // None admitted: nothing.
        let none = graph.search_admitting(5, 1, &mut scratch, score, |_| {}, |_| false);
        assert!(none.is_empty());
        // Every node admitted: the search without a filter.
        let all = graph.search_admitting(4, 1, &mut scratch, score, |_| {}, |_| true);
        assert_eq!(all, graph.search(4, 1, &mut scratch, score, |_| {}));
        assert_eq!(
            all.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            [3, 4, 2, 5]
        );
    }

    #[test]
    fn a_search_of_a_complete_graph_finds_the_exact_nearest() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = 60u32;
        let points: Vec<f32> = (0..n).map(|_| rng.random_range(-10.0..10.0)).collect();
        let bottom = (0..n)
            .map(|i| (i, (0..n).filter(|j| *j != i).collect()))
            .collect();
        let graph = HnswGraph::from_lance(&lance_batch(&[bottom], 5)).unwrap();
        let query = 1.25f32;
        let mut scratch = SearchScratch::default();
        let found = graph.search(
            8,
            1,
            &mut scratch,
            |i| (points[i as usize] - query).abs(),
            |_| {},
        );
        let mut exact: Vec<(f32, u32)> = (0..n)
            .map(|i| ((points[i as usize] - query).abs(), i))
            .collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        assert_eq!(found, exact[..8]);
    }

    /// The HNSW paper's search of one level (algorithm 2) with its two heaps, as hnswlib runs
    /// it: the reference the sorted beam is checked against.
    fn two_heap_search(
        neighbors: &[Vec<u32>],
        entry: u32,
        ef: usize,
        score: impl Fn(u32) -> f32,
    ) -> Vec<(f32, u32)> {
        use std::cmp::Reverse;
        use std::collections::{BinaryHeap, HashSet};
        struct Key(f32, u32);
        impl PartialEq for Key {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other).is_eq()
            }
        }
        impl Eq for Key {}
        impl PartialOrd for Key {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Key {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
            }
        }
        let mut visited = HashSet::from([entry]);
        let mut candidates = BinaryHeap::from([Reverse(Key(score(entry), entry))]);
        let mut nearest = BinaryHeap::from([Key(score(entry), entry)]);
        while let Some(Reverse(Key(s, node))) = candidates.pop() {
            if nearest.len() >= ef && nearest.peek().is_some_and(|w| s > w.0) {
                break;
            }
            for &n in &neighbors[node as usize] {
                if !visited.insert(n) {
                    continue;
                }
                let s = score(n);
                if nearest.len() < ef || nearest.peek().is_some_and(|w| s < w.0) {
                    candidates.push(Reverse(Key(s, n)));
                    nearest.push(Key(s, n));
                    if nearest.len() > ef {
                        nearest.pop();
                    }
                }
            }
        }
        let mut out: Vec<(f32, u32)> = nearest.into_iter().map(|Key(s, n)| (s, n)).collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out
    }

    #[test]
    fn the_sorted_beam_finds_what_the_papers_two_heap_search_finds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let n = 400u32;
        for case in 0..20 {
            let points: Vec<[f32; 2]> = (0..n)
                .map(|_| [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)])
                .collect();
            // Sparse random links, so that searches stop early and in different places.
            let neighbors: Vec<Vec<u32>> = (0..n)
                .map(|i| {
                    let mut links: Vec<u32> = (0..6).map(|_| rng.random_range(0..n)).collect();
                    links.retain(|j| *j != i);
                    links.sort_unstable();
                    links.dedup();
                    links
                })
                .collect();
            let bottom = neighbors.iter().cloned().enumerate();
            let bottom = bottom.map(|(i, links)| (i as u32, links)).collect();
            let entry = rng.random_range(0..n);
            let graph = HnswGraph::from_lance(&lance_batch(&[bottom], entry)).unwrap();
            let query = [rng.random_range(-1.0..1.0), rng.random_range(-1.0f32..1.0)];
            // Distinct scores: where several nodes tie with the beam's farthest, the paper's
            // search may also expand those of them it dropped from its nearest, the sorted beam
            // does not (both deterministically).
            let score = |i: u32| {
                let [x, y] = points[i as usize];
                (x - query[0]).powi(2) + (y - query[1]).powi(2)
            };
            let mut scratch = SearchScratch::default();
            for ef in [1, 3, 10, 40] {
                let found = graph.search(ef, 1, &mut scratch, score, |_| {});
                let reference = two_heap_search(&neighbors, entry, ef, score);
                assert_eq!(found, reference, "case {case}, ef {ef}");
            }
        }
    }

    #[test]
    fn the_descent_follows_the_upper_levels_to_the_query() {
        // A path 0 - 1 - ... - 99 at the bottom; level 1 links every tenth node in a chain, so
        // from the entry point 0 the descent must walk level 1 to node 70 before the beam.
        let n = 100u32;
        let bottom = (0..n)
            .map(|i| {
                let mut links = Vec::new();
                if i > 0 {
                    links.push(i - 1);
                }
                if i + 1 < n {
                    links.push(i + 1);
                }
                (i, links)
            })
            .collect();
        let upper: Vec<(u32, Vec<u32>)> = (0..n)
            .step_by(10)
            .map(|i| {
                let mut links = Vec::new();
                if i >= 10 {
                    links.push(i - 10);
                }
                if i + 10 < n {
                    links.push(i + 10);
                }
                (i, links)
            })
            .collect();
        let graph = HnswGraph::from_lance(&lance_batch(&[bottom, upper], 0)).unwrap();
        let mut scratch = SearchScratch::default();
        let mut scored = Vec::new();
        let found = graph.search(
            3,
            1,
            &mut scratch,
            |i| {
                scored.push(i);
                (i as f32 - 72.0).abs()
            },
            |_| {},
        );
        assert_eq!(found, vec![(0.0, 72), (1.0, 71), (1.0, 73)]);
        // The bottom beam starts near 70: it scores a handful of nodes, not the path from 0.
        assert!(scored.len() < 30, "scored {} nodes", scored.len());
    }

    #[test]
    fn a_wider_upper_beam_escapes_where_the_greedy_descent_is_caught() {
        // Points on a line, no bottom-level edges, so a search returns the nodes the descent
        // ends with. Level 1: from the entry point 50, node 70 is nearer the query (100) but a
        // dead end; 99 is only reached through 20, which is farther.
        let n = 100u32;
        let bottom = (0..n).map(|i| (i, Vec::new())).collect();
        let upper = vec![
            (20, vec![50, 99]),
            (50, vec![70, 20]),
            (70, vec![50]),
            (99, vec![20]),
        ];
        let graph = HnswGraph::from_lance(&lance_batch(&[bottom, upper], 50)).unwrap();
        let score = |i: u32| (i as f32 - 100.0).abs();
        let mut scratch = SearchScratch::default();
        assert_eq!(
            graph.search(1, 1, &mut scratch, score, |_| {}),
            vec![(30.0, 70)]
        );
        assert_eq!(
            graph.search(1, 3, &mut scratch, score, |_| {}),
            vec![(1.0, 99)]
        );
        // The bottom beam starts from every node the upper beam ended with.
        assert_eq!(
            graph.search(3, 3, &mut scratch, score, |_| {}),
            vec![(1.0, 99), (30.0, 70), (50.0, 50)]
        );
    }

    #[test]
    fn an_upper_level_without_the_descents_nodes_is_passed_over() {
        // The entry point 0 is not on level 1, so the bottom beam starts from it.
        let bottom = vec![(0, vec![1]), (1, vec![0, 2]), (2, vec![1]), (3, vec![])];
        let upper = vec![(3, vec![])];
        let graph = HnswGraph::from_lance(&lance_batch(&[bottom, upper], 0)).unwrap();
        let mut scratch = SearchScratch::default();
        let found = graph.search(1, 3, &mut scratch, |i| (i as f32 - 2.0).abs(), |_| {});
        assert_eq!(found, vec![(0.0, 2)]);
    }

    #[test]
    fn a_visited_set_forgets_between_searches_and_across_generation_wraps() {
        let mut visited = VisitedSet::default();
        for _ in 0..70_000 {
            visited.start(4);
            assert!(visited.insert(3));
            assert!(!visited.insert(3));
        }
    }

    #[test]
    fn a_malformed_graph_is_refused_with_its_fault_named() {
        let bottom = vec![(0, vec![1]), (2, vec![0])];
        let err = HnswGraph::from_lance(&lance_batch(&[bottom], 0)).unwrap_err();
        assert!(err.to_string().contains("node 2 at row 1"), "{err}");
        let bottom = vec![(0, vec![1]), (1, vec![0])];
        let err =
            HnswGraph::from_lance(&lance_batch(std::slice::from_ref(&bottom), 9)).unwrap_err();
        assert!(err.to_string().contains("entry point 9"), "{err}");
        // An upper level naming a node the bottom level does not have.
        let upper = vec![(0, vec![5]), (5, vec![0])];
        let err = HnswGraph::from_lance(&lance_batch(&[bottom, upper], 0)).unwrap_err();
        assert!(err.to_string().contains("level 1 has node 5"), "{err}");
    }
}
