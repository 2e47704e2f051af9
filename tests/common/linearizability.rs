//! A linearizability checker for one register with compare-and-set (one etcd key), after
//! Wing & Gong's search with Lowe's memoisation (the algorithm of Knossos and Porcupine), run
//! segment by segment so that its cost grows linearly with the history's length.
//!
//! Why here: the chaos soak records what clients saw while members died, and must decide
//! whether some total order of those operations, each taking effect at one instant between its
//! invocation and its completion, explains every answer. etcd keys are independent registers,
//! so the history is checked one key at a time (P-compositionality).
//!
//! An operation whose outcome is unknown (it failed or timed out: a write may or may not have
//! been applied) has no completion: it may take effect at any point after its invocation, or
//! never, and at most once. The search only has to place the completed operations; an unknown
//! write is placed only where it explains something. Unknown reads say nothing and are left out
//! by the caller.
//!
//! **Segments.** One search over a whole 10-minute history (80 000 operations per key) can
//! wander: a wrong choice early is only refuted much later, and the search gave up. So the
//! history is cut at its quiescent points, where no completed operation is in flight:
//! everything completed before a cut precedes everything invoked after it in any
//! linearization. Each segment is searched exhaustively, from every configuration the previous
//! segment could end in: the register's value plus which unknown writes have already taken
//! effect (an unknown write in flight across a cut may take effect on either side of it, or
//! never; one seen before a cut cannot take effect again after it). A configuration that
//! needs a superset of the unknown writes another needs, with the same value, is dropped: the
//! other explains everything it explains. The search's cost is then a sum over segments, each
//! bounded by its own width, so the budget is per segment.
//!
//! **Pruning without losing anything.** Within a segment, the search is cut down by facts
//! that keep every order that matters (`tests/linearizability.rs` checks the result against a
//! brute-force search of every order on 30 000 small random histories):
//!
//! - Values nobody observes (no read returned them, no compare-and-set compared with them)
//!   are indistinguishable, so they are one value: "some value nobody saw".
//! - A completed operation that leaves the value as it is (a read, a failed compare-and-set,
//!   a delete of nothing) and can be placed now is placed now, alone: moved to the front of
//!   any order that placed it later, it changes nothing.
//! - A candidate that needs a value (a read of `v`, a compare-and-set with `v` that held)
//!   that nothing left can write before the candidate completed ends the branch.
//! - Unknown writes with the same (so renamed) input are interchangeable once invoked, so the
//!   search only ever applies the earliest-invoked one not applied yet.
//! - Some linearization, if any exists, applies each unknown write right before an operation
//!   that could not be placed without it (take one applying the fewest unknown writes, each
//!   as late as possible: an unknown write followed by an operation that does not need it
//!   can be dropped, or moved after that operation). So an unknown write is only placed where
//!   some completed candidate is blocked, and the next operation placed must be one it
//!   unblocks (or an unknown compare-and-set that its value lets succeed, then the same rule).
//! - Every (completed operations placed, register value) explored is kept (the set as a
//!   128-bit hash) with the unknown writes applied on the way; reaching it again with the same
//!   or more unknown writes applied is not explored again.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<V> {
    /// Read the value.
    Get,
    /// Write a value.
    Put(V),
    /// If the value is `expect`, write `new`.
    Cas {
        /// The value compared with.
        expect: V,
        /// The value written when the comparison holds.
        new: V,
    },
    /// Remove the key.
    Delete,
}

/// What a completed operation answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<V> {
    /// The value read (`None`: no such key).
    Get(Option<V>),
    /// The write was applied.
    Put,
    /// Whether the comparison held (and the write was applied).
    Cas(bool),
    /// Whether a key was deleted.
    Delete(bool),
}

/// One operation of a history; times are in any monotonic unit.
#[derive(Clone, Debug)]
pub struct Op<V> {
    /// When it was invoked.
    pub call: u64,
    /// When it completed and what it answered; `None` when the outcome is unknown.
    pub done: Option<(u64, Output<V>)>,
    /// What it asked for.
    pub input: Input<V>,
}

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations explains every answer.
    Linearizable,
    /// No order does.
    NotLinearizable {
        /// The completed operation to look at: of those no order could place, the one that
        /// completed first.
        stuck: usize,
        /// The most completed operations some order placed.
        placed: usize,
    },
    /// The search of one segment gave up after exploring too many configurations.
    Inconclusive,
}

/// The verdict and what the search cost.
#[derive(Clone, Debug)]
pub struct Report {
    /// The answer.
    pub verdict: Verdict,
    /// Configurations explored, over all segments.
    pub explored: u64,
    /// Segments the history was cut into (at its quiescent points).
    pub segments: usize,
    /// Completed operations in the longest segment.
    pub longest_segment: usize,
    /// Configurations explored in the costliest segment (what the budget bounds).
    pub costliest_segment: u64,
    /// The most configurations carried across one cut.
    pub widest_cut: usize,
}

/// The register's value, as an interned id (`None`: no key).
type State = Option<u32>;

/// The id shared by every value nobody observed.
const UNSEEN: u32 = u32::MAX;

/// Interned input; `u32` ids stand for values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum In {
    Get,
    Put(u32),
    Cas(u32, u32),
    Delete,
}

#[derive(Clone, Copy, Debug)]
enum Out {
    Get(Option<u32>),
    Put,
    Cas(bool),
    Delete(bool),
}

/// The register model: the state after `input` answered `output` in `state`, if it can.
/// An unknown outcome (`None`) accepts whatever the operation would have answered.
fn step(state: State, input: In, output: Option<Out>) -> Option<State> {
    match (input, output) {
        (In::Get, Some(Out::Get(v))) => (v == state).then_some(state),
        (In::Get, None) => Some(state),
        (In::Put(v), Some(Out::Put) | None) => Some(Some(v)),
        (In::Cas(expect, new), Some(Out::Cas(true))) => {
            (state == Some(expect)).then_some(Some(new))
        }
        (In::Cas(expect, _), Some(Out::Cas(false))) => (state != Some(expect)).then_some(state),
        (In::Cas(expect, new), None) => Some(if state == Some(expect) {
            Some(new)
        } else {
            state
        }),
        (In::Delete, Some(Out::Delete(deleted))) => (state.is_some() == deleted).then_some(None),
        (In::Delete, None) => Some(None),
        // An answer of the wrong kind explains nothing.
        _ => None,
    }
}

/// A set of operations, as a 128-bit Zobrist hash: each operation has a random 128-bit key and
/// the set is the XOR of its members' keys, updated in O(1) as operations are placed and
/// unplaced. Memoising on the hash instead of the set keeps memory per configuration constant;
/// two different sets sharing a hash (which would prune a configuration unexplored) has odds
/// of about 2^-128 per pair.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
struct OpSet(u128);

impl OpSet {
    /// Operation `i`'s key (splitmix64, twice).
    fn key(i: usize) -> u128 {
        let mix = |mut z: u64| {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let i = i as u64;
        (u128::from(mix(2 * i)) << 64) | u128::from(mix(2 * i + 1))
    }

    /// Adds or removes operation `i`.
    fn toggle(&mut self, i: usize) {
        self.0 ^= Self::key(i);
    }
}

// === impl Events ===

/// The invocations and completions of one segment's completed operations in time order, as a
/// doubly linked list from which placed operations are unlinked (and relinked when the search
/// backtracks). Operations are numbered within the segment.
struct Events {
    /// Per event: (operation, is a completion).
    event: Vec<(usize, bool)>,
    time: Vec<u64>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per operation: its invocation's and completion's event.
    call_of: Vec<usize>,
    ret_of: Vec<usize>,
    /// Per operation: whether it is placed.
    placed: Vec<bool>,
}

impl Events {
    /// Event `0` is the list's head; events are numbered from 1.
    fn new(ops: &[(u64, u64)]) -> Self {
        let mut timed: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (op, &(call, ret)) in ops.iter().enumerate() {
            timed.push((call, false, op));
            timed.push((ret, true, op));
        }
        // On equal times, invocations first: the operations then count as concurrent, the
        // lenient reading of a tie.
        timed.sort();
        let n = timed.len() + 1;
        let mut event = vec![(usize::MAX, false)];
        let mut time = vec![0];
        let mut call_of = vec![0; ops.len()];
        let mut ret_of = vec![0; ops.len()];
        for (i, &(t, is_ret, op)) in timed.iter().enumerate() {
            event.push((op, is_ret));
            time.push(t);
            if is_ret {
                ret_of[op] = i + 1;
            } else {
                call_of[op] = i + 1;
            }
        }
        // `n` stands for the end of the list.
        let next = (1..=n).collect();
        let prev = (0..n).map(|i| i.wrapping_sub(1)).collect();
        Events {
            event,
            time,
            next,
            prev,
            placed: vec![false; call_of.len()],
            call_of,
            ret_of,
        }
    }

    fn end(&self) -> usize {
        self.event.len()
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != self.end() {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != self.end() {
            self.prev[n] = e;
        }
    }

    /// Takes operation `op` out of the pending events.
    fn place(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        self.unlink(self.ret_of[op]);
        self.placed[op] = true;
    }

    /// Undoes [`place`](Self::place) (in reverse order of the places).
    fn unplace(&mut self, op: usize) {
        self.placed[op] = false;
        self.relink(self.ret_of[op]);
        self.relink(self.call_of[op]);
    }

    /// The operation of the first pending completion, if any.
    fn first_pending(&self) -> Option<usize> {
        let mut e = self.next[0];
        while e != self.end() {
            let (op, is_ret) = self.event[e];
            if is_ret {
                return Some(op);
            }
            e = self.next[e];
        }
        None
    }

    /// When operation `op` completed.
    fn ret_time(&self, op: usize) -> u64 {
        self.time[self.ret_of[op]]
    }

    /// The operations that may take effect next, those invoked before the first pending
    /// completion, into `out`; and that completion's operation and time (`None`: all placed).
    fn candidates(&self, out: &mut Vec<usize>) -> Option<(usize, u64)> {
        out.clear();
        let mut e = self.next[0];
        while e != self.end() {
            let (op, is_ret) = self.event[e];
            if is_ret {
                return Some((op, self.time[e]));
            }
            out.push(op);
            e = self.next[e];
        }
        None
    }
}

// === impl History ===

/// Unknown writes with one (renamed) input, by invocation: interchangeable once invoked, so
/// the search applies them in this order and a configuration only counts how many it applied.
struct Class {
    input: In,
    members: Vec<usize>,
    calls: Vec<u64>,
}

/// The history, interned.
struct History {
    inputs: Vec<In>,
    outputs: Vec<Option<Out>>,
    calls: Vec<u64>,
    rets: Vec<u64>,
    classes: Vec<Class>,
    /// Classes by the value they write.
    class_writes: HashMap<State, Vec<usize>>,
}

impl History {
    /// Whether class `class` has an unknown write not applied yet (`applied` counts per
    /// class) that was invoked by `t`.
    fn available(&self, class: usize, applied: &[u32], t: u64) -> bool {
        let c = &self.classes[class];
        let k = applied[class] as usize;
        k < c.members.len() && c.calls[k] <= t
    }

    /// Whether completed operation `op`, wherever it can be placed, leaves the value as is.
    fn keeps_value(&self, op: usize) -> bool {
        match (self.inputs[op], self.outputs[op]) {
            (_, Some(Out::Get(_) | Out::Cas(false) | Out::Delete(false))) => true,
            (In::Cas(expect, new), Some(Out::Cas(true))) => expect == new,
            _ => false,
        }
    }

    /// The value completed operation `op` needs, if one value: `Some(v)` to read `v` or to
    /// compare with it successfully, `None` to read or delete nothing.
    fn needs(&self, op: usize) -> Option<State> {
        match (self.inputs[op], self.outputs[op]) {
            (_, Some(Out::Get(v))) => Some(v),
            (In::Cas(expect, _), Some(Out::Cas(true))) => Some(Some(expect)),
            (_, Some(Out::Delete(false))) => Some(None),
            _ => None,
        }
    }

    /// The value operation `op` may write, if it may change the value.
    fn writes(&self, op: usize) -> Option<State> {
        if self.keeps_value(op) {
            return None;
        }
        match self.inputs[op] {
            In::Get => None,
            In::Put(v) | In::Cas(_, v) => Some(Some(v)),
            In::Delete => Some(None),
        }
    }

    /// Completed operation `op` from `state`.
    fn step(&self, state: State, op: usize) -> Option<State> {
        step(state, self.inputs[op], self.outputs[op])
    }
}

/// The unknown writes invoked so far that may still take effect, as the search looks them up.
#[derive(Default)]
struct Pool {
    /// Classes of puts and deletes, which take effect from any value.
    blind: Vec<usize>,
    /// Classes of compare-and-sets, by the value they compare with.
    cas: HashMap<u32, Vec<usize>>,
}

impl Pool {
    fn add(&mut self, h: &History, class: usize) {
        match h.classes[class].input {
            In::Cas(expect, _) => self.cas.entry(expect).or_default().push(class),
            _ => self.blind.push(class),
        }
    }

    /// Compare-and-set classes that succeed from `state`.
    fn cas_from(&self, state: State) -> &[usize] {
        state
            .and_then(|v| self.cas.get(&v))
            .map_or(&[], |v| v.as_slice())
    }

    /// Drops the classes every configuration in `cuts` has applied in full.
    fn retire(&mut self, h: &History, cuts: &[Cut]) {
        let live = |class: &usize| {
            let n = h.classes[*class].members.len() as u32;
            cuts.iter().any(|c| c.applied[*class] < n)
        };
        self.blind.retain(live);
        self.cas.retain(|_, classes| {
            classes.retain(live);
            !classes.is_empty()
        });
    }
}

/// A configuration at a cut: the value and how many unknown writes of each class took effect.
#[derive(Clone)]
struct Cut {
    state: State,
    applied: Vec<u32>,
}

/// Keeps the configurations no other one explains more than: same value, no more unknown
/// writes of any class applied.
fn minimal(mut cuts: Vec<Cut>) -> Vec<Cut> {
    cuts.sort_by_key(|c| c.applied.iter().map(|&n| u64::from(n)).sum::<u64>());
    let mut kept: Vec<Cut> = Vec::new();
    for c in cuts {
        let covered = kept
            .iter()
            .any(|k| k.state == c.state && k.applied.iter().zip(&c.applied).all(|(a, b)| a <= b));
        if !covered {
            kept.push(c);
        }
    }
    kept
}

// === impl Search ===

/// What may be placed next.
#[derive(Clone, Copy, Debug)]
enum Cand {
    /// A completed operation of the segment (its number in the segment).
    Done(usize),
    /// The next unknown write of a class.
    Unknown(usize),
}

/// After unknown writes: the value before the first of them and before the last one.
type Chain = Option<(State, State)>;

/// One level of the depth-first search.
struct Frame {
    candidates: Vec<Cand>,
    tried: usize,
    state: State,
    chain: Chain,
    placed: Option<Cand>,
}

/// How a segment's search ended.
enum Outcome {
    /// The configurations the segment may end in (none left out that matters).
    Cuts(Vec<Cut>),
    /// No configuration explains the segment: the completed operation no configuration
    /// could place that completed first, and the most operations placed at once.
    Stuck { placed: usize, op: usize },
    /// Over budget.
    GaveUp,
}

/// The search of one segment.
struct Search<'a> {
    h: &'a History,
    pool: &'a Pool,
    /// The segment's completed operations (history indices).
    seg: &'a [usize],
    events: Events,
    scratch: Vec<usize>,
    /// The segment's completed writes (numbers in the segment) by the value they write.
    writers: HashMap<State, Vec<usize>>,
}

impl<'a> Search<'a> {
    fn new(h: &'a History, pool: &'a Pool, seg: &'a [usize]) -> Search<'a> {
        let ops: Vec<(u64, u64)> = seg.iter().map(|&g| (h.calls[g], h.rets[g])).collect();
        let mut writers: HashMap<State, Vec<usize>> = HashMap::new();
        for (l, &g) in seg.iter().enumerate() {
            if let Some(v) = h.writes(g) {
                writers.entry(v).or_default().push(l);
            }
        }
        Search {
            h,
            pool,
            seg,
            events: Events::new(&ops),
            scratch: Vec::new(),
            writers,
        }
    }

    /// Whether some blocked operation (history indices) needs a value nothing left can write
    /// before it completes: then no order of what is left explains the segment.
    fn doomed(&self, applied: &[u32], blocked: &[usize]) -> bool {
        let h = self.h;
        blocked.iter().any(|&g| {
            let Some(needed) = h.needs(g) else {
                return false;
            };
            let by = h.rets[g];
            let done = self.writers.get(&needed).is_some_and(|ws| {
                ws.iter()
                    .any(|&l| !self.events.placed[l] && h.calls[self.seg[l]] <= by)
            });
            let unknown = h
                .class_writes
                .get(&needed)
                .is_some_and(|cs| cs.iter().any(|&c| h.available(c, applied, by)));
            !done && !unknown
        })
    }

    /// Whether operation `l` of the segment needs a value that no start has and that nothing
    /// can write before it completes: it alone makes the segment unexplainable.
    fn hopeless(&self, starts: &[Cut], l: usize) -> bool {
        let h = self.h;
        let g = self.seg[l];
        let Some(needed) = h.needs(g) else {
            return false;
        };
        let by = h.rets[g];
        let start = starts.iter().any(|s| s.state == needed);
        let done = self
            .writers
            .get(&needed)
            .is_some_and(|ws| ws.iter().any(|&w| h.calls[self.seg[w]] <= by));
        let unknown = h.class_writes.get(&needed).is_some_and(|cs| {
            cs.iter()
                .any(|&c| starts.iter().any(|s| h.available(c, &s.applied, by)))
        });
        !start && !done && !unknown
    }

    /// The candidates in `state`, after the unknown writes `chain` if the last placement was
    /// one.
    fn frame(&mut self, applied: &[u32], state: State, chain: Chain) -> Frame {
        let (_, t) = self
            .events
            .candidates(&mut self.scratch)
            .expect("frames are built while completed operations remain");
        let (h, pool, seg) = (self.h, self.pool, self.seg);
        let available = |class: usize| h.available(class, applied, t);
        let mut candidates = Vec::new();
        match chain {
            None => {
                // A completed operation that leaves the value as it is (a read, a failed
                // compare-and-set, a delete of nothing) and can be placed now is placed now,
                // alone: moving it to the front of any order that places it later changes no
                // value, and it completed after everything that had to precede it.
                let keeps = self
                    .scratch
                    .iter()
                    .find(|&&l| h.keeps_value(seg[l]) && h.step(state, seg[l]).is_some());
                if let Some(&l) = keeps {
                    return Frame {
                        candidates: vec![Cand::Done(l)],
                        tried: 0,
                        state,
                        chain,
                        placed: None,
                    };
                }
                let mut blocked = Vec::new();
                for &l in &self.scratch {
                    candidates.push(Cand::Done(l));
                    if h.step(state, seg[l]).is_none() {
                        blocked.push(seg[l]);
                    }
                }
                // Unknown writes only where a completed operation cannot be placed, and only
                // those whose value lets one be (or lets an unknown compare-and-set succeed).
                if self.doomed(applied, &blocked) {
                    candidates.clear();
                } else if !blocked.is_empty() {
                    let useful = |after: State| {
                        blocked.iter().any(|&g| h.step(after, g).is_some())
                            || pool.cas_from(after).iter().any(|&c| available(c))
                    };
                    let mut offer = |class: usize| {
                        if !available(class) {
                            return;
                        }
                        let after = step(state, h.classes[class].input, None);
                        if after.is_some_and(|a| a != state && useful(a)) {
                            candidates.push(Cand::Unknown(class));
                        }
                    };
                    pool.blind.iter().for_each(|&c| offer(c));
                    pool.cas_from(state).iter().for_each(|&c| offer(c));
                }
            }
            Some((start, before)) => {
                // Right after an unknown write, only what needed it: a completed operation
                // that could not be placed before it (nor before the chain began), or an
                // unknown compare-and-set that now succeeds.
                for &l in &self.scratch {
                    let g = seg[l];
                    if h.step(start, g).is_none() && h.step(before, g).is_none() {
                        candidates.push(Cand::Done(l));
                    }
                }
                for &c in pool.cas_from(state) {
                    if available(c) {
                        candidates.push(Cand::Unknown(c));
                    }
                }
            }
        }
        Frame {
            candidates,
            tried: 0,
            state,
            chain,
            placed: None,
        }
    }

    /// Searches the segment from each of `starts`; with `first_only`, stops at the first
    /// configuration that explains it all.
    fn run(&mut self, starts: &[Cut], budget: u64, first_only: bool) -> (Outcome, u64) {
        let h = self.h;
        // Per (completed operations placed, value, chain, start): the unknown writes applied
        // in this segment on each visit (class, count). A visit with a superset of some
        // earlier visit's is skipped: whatever it can reach, the earlier one reached with
        // fewer unknown writes spent.
        type Visits = Vec<Vec<(usize, u32)>>;
        let mut seen: HashMap<(OpSet, State, Chain, usize), Visits> = HashMap::new();
        let mut ends: Vec<Cut> = Vec::new();
        let mut ended: HashSet<(State, Vec<u32>)> = HashSet::new();
        let mut explored = 0u64;
        // The most completed operations placed at once, the first pending completion then, and
        // which operations were ever placed.
        let mut deepest = (0, self.events.first_pending());
        let mut ever = vec![false; self.seg.len()];
        for (si, start) in starts.iter().enumerate() {
            let mut applied = start.applied.clone();
            let mut set = OpSet::default();
            // The classes of the unknown writes applied on the current path.
            let mut spent: Vec<usize> = Vec::new();
            let mut placed = 0usize;
            let mut stack = vec![self.frame(&applied, start.state, None)];
            while let Some(frame) = stack.last_mut() {
                match frame.placed.take() {
                    Some(Cand::Done(l)) => {
                        self.events.unplace(l);
                        set.toggle(self.seg[l]);
                        placed -= 1;
                    }
                    Some(Cand::Unknown(c)) => {
                        applied[c] -= 1;
                        spent.pop();
                    }
                    None => {}
                }
                let state = frame.state;
                let mut next = None;
                while frame.tried < frame.candidates.len() {
                    let cand = frame.candidates[frame.tried];
                    frame.tried += 1;
                    let (after, chain) = match cand {
                        Cand::Done(l) => match h.step(state, self.seg[l]) {
                            Some(after) => (after, None),
                            None => continue,
                        },
                        Cand::Unknown(c) => {
                            let Some(after) = step(state, h.classes[c].input, None) else {
                                continue;
                            };
                            let start = frame.chain.map_or(state, |(s, _)| s);
                            (after, Some((start, state)))
                        }
                    };
                    explored += 1;
                    match cand {
                        Cand::Done(l) => set.toggle(self.seg[l]),
                        Cand::Unknown(c) => spent.push(c),
                    }
                    let visit = counts(&spent);
                    let visits = seen.entry((set, after, chain, si)).or_default();
                    if !visits.iter().any(|v| covers(v, &visit)) {
                        visits.retain(|v| !covers(&visit, v));
                        visits.push(visit);
                        next = Some((cand, after, chain));
                        break;
                    }
                    match cand {
                        Cand::Done(l) => set.toggle(self.seg[l]),
                        Cand::Unknown(_) => {
                            spent.pop();
                        }
                    }
                }
                if explored > budget {
                    return (Outcome::GaveUp, explored);
                }
                let Some((cand, after, chain)) = next else {
                    stack.pop();
                    continue;
                };
                frame.placed = Some(cand);
                match cand {
                    Cand::Done(l) => {
                        self.events.place(l);
                        placed += 1;
                        ever[l] = true;
                        if placed > deepest.0 {
                            deepest = (placed, self.events.first_pending());
                        }
                    }
                    Cand::Unknown(c) => applied[c] += 1,
                }
                if placed == self.seg.len() {
                    // Trailing unknown writes are never needed here: the next segment may
                    // place them before whatever needs them.
                    if ended.insert((after, applied.clone())) {
                        ends.push(Cut {
                            state: after,
                            applied: applied.clone(),
                        });
                        if first_only {
                            return (Outcome::Cuts(ends), explored);
                        }
                    }
                    continue;
                }
                let frame = self.frame(&applied, after, chain);
                stack.push(frame);
            }
        }
        if ends.is_empty() {
            // The culprit: an operation that needs a value no start has and nothing writes in
            // time, else one no order could place (the search stops before the operations
            // after a dead end, so the first to complete), else the one the deepest order
            // could not place.
            let hopeless = (0..self.seg.len()).filter(|&l| self.hopeless(starts, l));
            let never = (0..self.seg.len()).filter(|&l| !ever[l]);
            let first = |ls: &mut dyn Iterator<Item = usize>| {
                ls.min_by_key(|&l| (self.events.ret_time(l), l))
            };
            let op = first(&mut { hopeless })
                .or_else(|| first(&mut { never }))
                .or(deepest.1)
                .map_or(self.seg[0], |l| self.seg[l]);
            (
                Outcome::Stuck {
                    placed: deepest.0,
                    op,
                },
                explored,
            )
        } else {
            (Outcome::Cuts(minimal(ends)), explored)
        }
    }
}

/// `classes` as (class, how many times), by class.
fn counts(classes: &[usize]) -> Vec<(usize, u32)> {
    let mut sorted = classes.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(usize, u32)> = Vec::new();
    for c in sorted {
        match out.last_mut() {
            Some((last, n)) if *last == c => *n += 1,
            _ => out.push((c, 1)),
        }
    }
    out
}

/// Whether every count in `fewer` is at most the same class's in `more` (both by class).
fn covers(fewer: &[(usize, u32)], more: &[(usize, u32)]) -> bool {
    let mut rest = more.iter();
    fewer.iter().all(|&(c, n)| {
        rest.by_ref()
            .find(|&&(d, _)| d >= c)
            .is_some_and(|&(d, m)| d == c && m >= n)
    })
}

// === check ===

/// Checks `history` against a register that starts as `initial`; gives up when one segment
/// (the operations between two quiescent points) takes more than `budget` configurations.
pub fn check<V: Clone + Eq + Hash>(history: &[Op<V>], initial: Option<V>, budget: u64) -> Report {
    let (h, ids) = intern(history);
    let initial = initial
        .as_ref()
        .map(|v| ids.get(v).copied().unwrap_or(UNSEEN));
    let mut report = Report {
        verdict: Verdict::Linearizable,
        explored: 0,
        segments: 0,
        longest_segment: 0,
        costliest_segment: 0,
        widest_cut: 1,
    };

    // Completed operations by invocation, cut where none is in flight.
    let mut completed: Vec<usize> = (0..history.len())
        .filter(|&i| history[i].done.is_some())
        .collect();
    completed.sort_by_key(|&i| (h.calls[i], h.rets[i], i));
    let mut segments = Vec::new();
    let mut from = 0;
    let mut horizon = 0;
    for (j, &op) in completed.iter().enumerate() {
        if j > from && horizon < h.calls[op] {
            segments.push(from..j);
            from = j;
        }
        horizon = horizon.max(h.rets[op]);
    }
    if from < completed.len() {
        segments.push(from..completed.len());
    }
    report.segments = segments.len();

    // Classes join the pool once invoked by a segment's end.
    let mut by_first: Vec<usize> = (0..h.classes.len()).collect();
    by_first.sort_by_key(|&c| h.classes[c].calls[0]);
    let mut by_first = by_first.into_iter().peekable();
    let mut pool = Pool::default();
    let mut cuts = vec![Cut {
        state: initial,
        applied: vec![0; h.classes.len()],
    }];
    let mut placed_before = 0;
    for (k, range) in segments.iter().enumerate() {
        let seg = &completed[range.clone()];
        let end = seg.iter().map(|&g| h.rets[g]).max().unwrap_or(0);
        while let Some(c) = by_first.next_if(|&c| h.classes[c].calls[0] <= end) {
            pool.add(&h, c);
        }
        let mut search = Search::new(&h, &pool, seg);
        let last = k + 1 == segments.len();
        let (outcome, explored) = search.run(&cuts, budget, last);
        report.explored += explored;
        report.costliest_segment = report.costliest_segment.max(explored);
        report.longest_segment = report.longest_segment.max(seg.len());
        match outcome {
            Outcome::Cuts(next) => cuts = next,
            Outcome::Stuck { placed, op } => {
                report.verdict = Verdict::NotLinearizable {
                    stuck: op,
                    placed: placed_before + placed,
                };
                return report;
            }
            Outcome::GaveUp => {
                report.verdict = Verdict::Inconclusive;
                return report;
            }
        }
        report.widest_cut = report.widest_cut.max(cuts.len());
        pool.retire(&h, &cuts);
        placed_before += seg.len();
    }
    report
}

/// Interns `history`: observed values (read, or compared with) get ids, the others share
/// [`UNSEEN`]; unknown writes that can change the value are grouped into classes.
fn intern<V: Eq + Hash>(history: &[Op<V>]) -> (History, HashMap<&V, u32>) {
    let mut ids: HashMap<&V, u32> = HashMap::new();
    for op in history {
        let observed = match (&op.input, &op.done) {
            (Input::Cas { expect, .. }, _) => Some(expect),
            (_, Some((_, Output::Get(Some(v))))) => Some(v),
            _ => None,
        };
        if let Some(v) = observed {
            let n = ids.len() as u32;
            ids.entry(v).or_insert(n);
        }
    }
    let id = |v: &V| ids.get(v).copied().unwrap_or(UNSEEN);
    let inputs: Vec<In> = history
        .iter()
        .map(|op| match &op.input {
            Input::Get => In::Get,
            Input::Put(v) => In::Put(id(v)),
            Input::Cas { expect, new } => In::Cas(id(expect), id(new)),
            Input::Delete => In::Delete,
        })
        .collect();
    let outputs: Vec<Option<Out>> = history
        .iter()
        .map(|op| {
            op.done.as_ref().map(|(_, out)| match out {
                Output::Get(v) => Out::Get(v.as_ref().map(id)),
                Output::Put => Out::Put,
                Output::Cas(ok) => Out::Cas(*ok),
                Output::Delete(deleted) => Out::Delete(*deleted),
            })
        })
        .collect();
    let calls: Vec<u64> = history.iter().map(|op| op.call).collect();
    let rets: Vec<u64> = history
        .iter()
        .map(|op| op.done.as_ref().map_or(u64::MAX, |d| d.0))
        .collect();

    // Unknown writes by class, each class by invocation. A read, or a compare-and-set that
    // writes the value it compares with, never changes the value: left out.
    let mut unknown: Vec<usize> = (0..history.len())
        .filter(|&i| history[i].done.is_none())
        .filter(|&i| !matches!(inputs[i], In::Get) && !matches!(inputs[i], In::Cas(e, n) if e == n))
        .collect();
    unknown.sort_by_key(|&i| (calls[i], i));
    let mut class_of: HashMap<In, usize> = HashMap::new();
    let mut classes: Vec<Class> = Vec::new();
    for i in unknown {
        let c = *class_of.entry(inputs[i]).or_insert_with(|| {
            classes.push(Class {
                input: inputs[i],
                members: Vec::new(),
                calls: Vec::new(),
            });
            classes.len() - 1
        });
        classes[c].members.push(i);
        classes[c].calls.push(calls[i]);
    }
    let mut class_writes: HashMap<State, Vec<usize>> = HashMap::new();
    for (c, class) in classes.iter().enumerate() {
        let writes = match class.input {
            In::Put(v) | In::Cas(_, v) => Some(v),
            _ => None,
        };
        class_writes.entry(writes).or_default().push(c);
    }
    let history = History {
        inputs,
        outputs,
        calls,
        rets,
        classes,
        class_writes,
    };
    (history, ids)
}
