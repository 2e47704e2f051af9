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
//! **Unknown writes, pruned without losing anything.** Three facts keep their cost small:
//!
//! - Values nobody observes (no read returned them, no compare-and-set compared with them)
//!   are indistinguishable, so they are one value: "some value nobody saw".
//! - Unknown writes with the same (so renamed) input are interchangeable once invoked, so the
//!   search only ever applies the earliest-invoked one not applied yet.
//! - Some linearization, if any exists, applies each unknown write right before an operation
//!   that could not be placed without it (take one applying the fewest unknown writes, each
//!   as late as possible: an unknown write followed by an operation that does not need it
//!   can be dropped, or moved after that operation). So an unknown write is only placed where
//!   some completed candidate is blocked, and the next operation placed must be one it
//!   unblocks (or an unknown compare-and-set that its value lets succeed, then the same rule).
//!   The proof is the exchange argument just given; `agrees_with_brute_force` checks it on
//!   thousands of random small histories.
//!
//! Within a segment, every (set of operations placed, register value) explored is kept (the
//! set as a 128-bit hash), so each such configuration is explored once.

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

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: u64 = 1_000_000;

    type H = Vec<Op<&'static str>>;

    fn done(
        call: u64,
        ret: u64,
        input: Input<&'static str>,
        out: Output<&'static str>,
    ) -> Op<&'static str> {
        Op {
            call,
            done: Some((ret, out)),
            input,
        }
    }

    fn unknown(call: u64, input: Input<&'static str>) -> Op<&'static str> {
        Op {
            call,
            done: None,
            input,
        }
    }

    fn verdict(history: &H) -> Verdict {
        check(history, None, BUDGET).verdict
    }

    fn cas(expect: &'static str, new: &'static str) -> Input<&'static str> {
        Input::Cas { expect, new }
    }

    fn get(call: u64, ret: u64, v: Option<&'static str>) -> Op<&'static str> {
        done(call, ret, Input::Get, Output::Get(v))
    }

    fn put(call: u64, ret: u64, v: &'static str) -> Op<&'static str> {
        done(call, ret, Input::Put(v), Output::Put)
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            done(0, 1, Input::Get, Output::Get(None)),
            done(2, 3, Input::Put("a"), Output::Put),
            done(4, 5, Input::Get, Output::Get(Some("a"))),
            done(6, 7, cas("a", "b"), Output::Cas(true)),
            done(8, 9, cas("a", "c"), Output::Cas(false)),
            done(10, 11, Input::Delete, Output::Delete(true)),
            done(12, 13, Input::Delete, Output::Delete(false)),
            done(14, 15, Input::Get, Output::Get(None)),
        ];
        let report = check(&h, None, BUDGET);
        assert_eq!(report.verdict, Verdict::Linearizable);
        assert_eq!(report.segments, 8, "{report:?}");
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_a_write() {
        // put(a) overlaps two reads: one saw it, one did not, in either real-time order as
        // long as the reads overlap each other too.
        let h = vec![
            done(0, 10, Input::Put("a"), Output::Put),
            done(1, 5, Input::Get, Output::Get(Some("a"))),
            done(2, 6, Input::Get, Output::Get(None)),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_a_completed_write_is_not_linearizable() {
        let h = vec![
            done(0, 1, Input::Put("a"), Output::Put),
            done(2, 3, Input::Get, Output::Get(None)),
        ];
        assert!(matches!(
            verdict(&h),
            Verdict::NotLinearizable {
                stuck: 1,
                placed: 1
            }
        ));
    }

    #[test]
    fn a_read_cannot_go_back_in_time() {
        // Two sequential reads, both concurrent with put(b): new value then old is impossible.
        let h = vec![
            done(0, 1, Input::Put("a"), Output::Put),
            done(2, 20, Input::Put("b"), Output::Put),
            done(3, 4, Input::Get, Output::Get(Some("b"))),
            done(5, 6, Input::Get, Output::Get(Some("a"))),
        ];
        assert!(matches!(verdict(&h), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn two_successful_cas_from_the_same_value_is_not_linearizable() {
        // A write applied twice looks like this.
        let h = vec![
            done(0, 1, Input::Put("a"), Output::Put),
            done(2, 5, cas("a", "b"), Output::Cas(true)),
            done(3, 6, cas("a", "c"), Output::Cas(true)),
        ];
        assert!(matches!(verdict(&h), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn an_unknown_write_may_take_effect_late() {
        // put(b) timed out; a read long after its invocation sees it.
        let h = vec![
            done(0, 1, Input::Put("a"), Output::Put),
            unknown(2, Input::Put("b")),
            done(100, 101, Input::Get, Output::Get(Some("a"))),
            done(200, 201, Input::Get, Output::Get(Some("b"))),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_never_take_effect() {
        let h = vec![
            done(0, 1, Input::Put("a"), Output::Put),
            unknown(2, Input::Put("b")),
            unknown(3, Input::Delete),
            done(100, 101, Input::Get, Output::Get(Some("a"))),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_takes_effect_at_most_once() {
        // Seen, overwritten, then seen again: that would be a second application; each read
        // and write is a segment of its own.
        let h = vec![
            unknown(0, Input::Put("b")),
            done(10, 11, Input::Get, Output::Get(Some("b"))),
            done(12, 13, Input::Put("c"), Output::Put),
            done(14, 15, Input::Get, Output::Get(Some("b"))),
        ];
        let report = check(&h, None, BUDGET);
        assert_eq!(report.segments, 3, "{report:?}");
        assert_eq!(
            report.verdict,
            Verdict::NotLinearizable {
                stuck: 3,
                placed: 2
            }
        );
    }

    #[test]
    fn an_unknown_write_cannot_take_effect_before_its_invocation() {
        let h = vec![
            done(0, 1, Input::Get, Output::Get(Some("b"))),
            unknown(2, Input::Put("b")),
        ];
        assert!(matches!(
            verdict(&h),
            Verdict::NotLinearizable { stuck: 0, .. }
        ));
    }

    #[test]
    fn an_unknown_cas_explains_a_failed_cas() {
        // cas(a->b) timed out but was applied, so the later cas(a->c) rightly failed and
        // nobody ever read b.
        let h = vec![
            done(0, 1, Input::Put("a"), Output::Put),
            unknown(2, cas("a", "b")),
            done(10, 11, cas("a", "c"), Output::Cas(false)),
            done(12, 13, Input::Put("d"), Output::Put),
            done(14, 15, Input::Get, Output::Get(Some("d"))),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn unknown_cas_chains_are_followed() {
        // Only put(b) then cas(b->c), both of unknown outcome, explain the read of c.
        let h = vec![
            put(0, 1, "a"),
            unknown(2, Input::Put("b")),
            unknown(3, cas("b", "c")),
            get(10, 11, Some("c")),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
        // Each once: b cannot come back after c.
        let h = vec![
            put(0, 1, "a"),
            unknown(2, Input::Put("b")),
            unknown(3, cas("b", "c")),
            get(10, 11, Some("c")),
            get(20, 21, Some("b")),
        ];
        assert!(matches!(
            verdict(&h),
            Verdict::NotLinearizable { stuck: 4, .. }
        ));
    }

    // --- cuts ---

    #[test]
    fn an_unknown_write_in_flight_across_cuts_takes_effect_after_them() {
        // put(b) is invoked, then three quiescent points pass before anyone sees b.
        let h = vec![
            put(0, 1, "a"),
            unknown(2, Input::Put("b")),
            get(3, 4, Some("a")),
            get(10, 11, Some("a")),
            get(20, 21, Some("b")),
            get(30, 31, Some("b")),
        ];
        let report = check(&h, None, BUDGET);
        assert_eq!(report.verdict, Verdict::Linearizable);
        assert_eq!(report.segments, 5, "{report:?}");
    }

    #[test]
    fn a_cut_carries_every_value_the_segment_may_end_in() {
        // put(b) and put(c) overlap: either may be last, so after the cut b or c.
        let base = vec![put(0, 1, "a"), put(10, 20, "b"), put(11, 19, "c")];
        let then = |reads: &[&'static str]| {
            let mut h = base.clone();
            for (i, v) in reads.iter().enumerate() {
                let t = 30 + 10 * i as u64;
                h.push(get(t, t + 1, Some(v)));
            }
            check(&h, None, BUDGET)
        };
        for reads in [&["b", "b"][..], &["c", "c"]] {
            let report = then(reads);
            assert_eq!(report.verdict, Verdict::Linearizable, "{reads:?}");
            assert_eq!(report.widest_cut, 2, "{report:?}");
        }
        for reads in [&["b", "c"][..], &["c", "b"]] {
            let report = then(reads);
            assert!(
                matches!(report.verdict, Verdict::NotLinearizable { stuck: 4, .. }),
                "{reads:?}: {report:?}"
            );
        }
    }

    #[test]
    fn a_cut_across_an_unknown_write_carries_whether_it_took_effect() {
        // put(c) of unknown outcome is read inside put(b)'s window: c took effect, before or
        // after b. After the cut: b (c spent) or c (c spent). A later read may see b or c,
        // but not b and then c: c cannot take effect twice.
        let base = vec![
            put(0, 1, "a"),
            put(10, 20, "b"),
            unknown(12, Input::Put("c")),
            get(15, 18, Some("c")),
        ];
        let then = |reads: &[&'static str]| {
            let mut h = base.clone();
            for (i, v) in reads.iter().enumerate() {
                let t = 30 + 10 * i as u64;
                h.push(get(t, t + 1, Some(v)));
            }
            check(&h, None, BUDGET)
        };
        for reads in [&["b", "b"][..], &["c", "c"]] {
            let report = then(reads);
            assert_eq!(report.verdict, Verdict::Linearizable, "{reads:?}");
            assert_eq!(report.widest_cut, 2, "{report:?}");
            assert_eq!(report.segments, 4, "{report:?}");
        }
        let report = then(&["b", "c"]);
        assert!(
            matches!(report.verdict, Verdict::NotLinearizable { stuck: 5, .. }),
            "{report:?}"
        );
        // Two unknown writes, each seen once after the cut: fine in that order only.
        let h = vec![
            put(0, 1, "a"),
            unknown(2, Input::Put("b")),
            unknown(3, Input::Put("c")),
            get(4, 5, Some("a")),
            get(10, 11, Some("b")),
            get(20, 21, Some("c")),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
        let mut h = h;
        h.push(get(30, 31, Some("b")));
        assert!(matches!(
            verdict(&h),
            Verdict::NotLinearizable { stuck: 6, .. }
        ));
    }

    #[test]
    fn a_write_that_completes_later_spans_the_would_be_cuts() {
        // put(b) is in flight from 2 to 50: no cut inside, so b is placed once among reads.
        let h = vec![
            put(0, 1, "a"),
            put(2, 50, "b"),
            get(3, 4, Some("a")),
            get(10, 11, Some("a")),
            get(20, 21, Some("b")),
            get(30, 31, Some("b")),
        ];
        let report = check(&h, None, BUDGET);
        assert_eq!(report.verdict, Verdict::Linearizable);
        assert_eq!(report.segments, 2, "{report:?}");
        let h = vec![
            put(0, 1, "a"),
            put(2, 50, "b"),
            get(3, 4, Some("a")),
            get(10, 11, Some("b")),
            get(20, 21, Some("a")),
        ];
        assert!(matches!(
            verdict(&h),
            Verdict::NotLinearizable { stuck: 4, .. }
        ));
    }

    // --- long histories ---

    /// A linearizable history of `n` operations from a known order: operation `i` takes
    /// effect at 10·i, its window up to `spread` either side (40: up to ~8 overlap, and
    /// quiescent points are rare); one write in 50 has an unknown outcome (half of those took
    /// effect, half never did).
    fn long_history(n: u64, spread: u64) -> Vec<Op<String>> {
        let mut h: Vec<Op<String>> = Vec::new();
        let mut state: Option<String> = None;
        let mut seed = 7u64;
        let mut rand = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for i in 0..n {
            let at = i * 10;
            let call = at.saturating_sub(rand(spread));
            let ret = at + rand(spread);
            let kind = rand(10);
            let lost = kind >= 4 && rand(50) == 0;
            let applied = !lost || rand(2) == 0;
            let mut after = state.clone();
            let (input, out) = match kind {
                0..=3 => (Input::Get, Output::Get(state.clone())),
                4..=6 => {
                    after = Some(format!("v{i}"));
                    (Input::Put(format!("v{i}")), Output::Put)
                }
                7 | 8 => {
                    let expect = match rand(2) {
                        0 => state.clone().unwrap_or_default(),
                        _ => "x".into(),
                    };
                    let ok = state.as_deref() == Some(expect.as_str());
                    if ok {
                        after = Some(format!("v{i}"));
                    }
                    let new = format!("v{i}");
                    (Input::Cas { expect, new }, Output::Cas(ok))
                }
                _ => {
                    after = None;
                    (Input::Delete, Output::Delete(state.is_some()))
                }
            };
            if applied {
                state = after;
            }
            h.push(Op {
                call,
                done: (!lost).then_some((ret, out)),
                input,
            });
        }
        h
    }

    #[test]
    fn a_long_concurrent_history_is_decided() {
        let h = long_history(100_000, 25);
        let unknown = h.iter().filter(|op| op.done.is_none()).count();
        assert!(unknown > 500, "{unknown} unknown writes");
        let report = check(&h, None, BUDGET);
        assert_eq!(report.verdict, Verdict::Linearizable, "{report:?}");
        // It was cut, and no segment came near the budget.
        assert!(report.segments > 1000, "{report:?}");
        assert!(report.costliest_segment < BUDGET / 10, "{report:?}");
    }

    #[test]
    fn a_dense_history_with_rare_quiescent_points_is_decided() {
        // Up to 8 operations in flight at once, segments of a thousand operations and more.
        let h = long_history(20_000, 40);
        let report = check(&h, None, BUDGET);
        assert_eq!(report.verdict, Verdict::Linearizable, "{report:?}");
        assert!(report.longest_segment > 1000, "{report:?}");
    }

    #[test]
    fn one_bad_read_in_a_long_history_is_found() {
        let mut h = long_history(3000, 40);
        let i = (1500..)
            .find(|&i| h[i].input == Input::Get && h[i].done.is_some())
            .unwrap();
        let ret = h[i].done.as_ref().unwrap().0;
        h[i].done = Some((ret, Output::Get(Some("never written".into()))));
        let report = check(&h, None, BUDGET);
        assert!(
            matches!(report.verdict, Verdict::NotLinearizable { stuck, .. } if stuck == i),
            "{report:?}"
        );
    }

    #[test]
    fn a_stale_read_planted_late_in_a_long_history_is_found() {
        let mut h = long_history(100_000, 25);
        // A value read half-way through, long overwritten by the end.
        let old = (50_000..)
            .find_map(|i| match &h[i].done {
                Some((_, Output::Get(Some(v)))) => Some(v.clone()),
                _ => None,
            })
            .unwrap();
        let i = (99_000..)
            .find(|&i| matches!(h[i].done, Some((_, Output::Get(Some(_))))))
            .unwrap();
        let ret = h[i].done.as_ref().unwrap().0;
        h[i].done = Some((ret, Output::Get(Some(old))));
        let report = check(&h, None, BUDGET);
        assert!(
            matches!(report.verdict, Verdict::NotLinearizable { stuck, placed } if stuck == i && placed > 90_000 * 6 / 10),
            "{report:?}"
        );
    }

    #[test]
    fn a_write_applied_twice_late_in_a_long_history_is_found() {
        let mut h = long_history(100_000, 25);
        // A successful compare-and-set near the end is answered as if applied twice: its
        // value is read again after a later write replaced it.
        let (w, v) = (98_000..)
            .find_map(|i| match (&h[i].input, &h[i].done) {
                (Input::Put(v), Some(_)) => Some((i, v.clone())),
                _ => None,
            })
            .unwrap();
        let replaced = (w + 1..)
            .find(|&i| matches!(h[i].input, Input::Put(_)) && h[i].done.is_some())
            .unwrap();
        let i = (replaced + 10..)
            .find(|&i| matches!(h[i].done, Some((_, Output::Get(_)))))
            .unwrap();
        let ret = h[i].done.as_ref().unwrap().0;
        h[i].done = Some((ret, Output::Get(Some(v))));
        let report = check(&h, None, BUDGET);
        assert!(
            matches!(report.verdict, Verdict::NotLinearizable { stuck, .. } if stuck == i),
            "{report:?}"
        );
    }

    // --- against the definition ---

    /// The register, on the values themselves.
    fn apply<'a>(state: Option<&'a str>, op: &Op<&'a str>) -> Option<Option<&'a str>> {
        let out = op.done.as_ref().map(|(_, o)| o);
        match (&op.input, out) {
            (Input::Get, Some(Output::Get(v))) => (*v == state).then_some(state),
            (Input::Get, None) => Some(state),
            (Input::Put(v), Some(Output::Put) | None) => Some(Some(*v)),
            (Input::Cas { expect, new }, Some(Output::Cas(true))) => {
                (state == Some(*expect)).then_some(Some(*new))
            }
            (Input::Cas { expect, .. }, Some(Output::Cas(false))) => {
                (state != Some(*expect)).then_some(state)
            }
            (Input::Cas { expect, new }, None) => Some(if state == Some(*expect) {
                Some(*new)
            } else {
                state
            }),
            (Input::Delete, Some(Output::Delete(d))) => (state.is_some() == *d).then_some(None),
            (Input::Delete, None) => Some(None),
            _ => None,
        }
    }

    /// Every order of every subset of the operations that keeps all completed ones: the
    /// definition, for small histories.
    fn brute(h: &H, placed: &mut Vec<bool>, state: Option<&'static str>) -> bool {
        if (0..h.len()).all(|i| placed[i] || h[i].done.is_none()) {
            return true;
        }
        for i in 0..h.len() {
            // Next may be any operation that no pending one completed before.
            let must_wait = (0..h.len())
                .any(|j| !placed[j] && h[j].done.as_ref().is_some_and(|(ret, _)| *ret < h[i].call));
            if placed[i] || must_wait {
                continue;
            }
            let Some(after) = apply(state, &h[i]) else {
                continue;
            };
            placed[i] = true;
            let ok = brute(h, placed, after);
            placed[i] = false;
            if ok {
                return true;
            }
        }
        false
    }

    /// A small history from a known order, with overlaps, unknown writes (some applied, some
    /// not), three values (so values repeat), and now and then a wrong answer.
    fn random_history(rand: &mut impl FnMut(u64) -> u64) -> H {
        const VALUES: [&str; 3] = ["a", "b", "c"];
        let mut state: Option<&'static str> = None;
        let mut h = Vec::new();
        let mut at = 0;
        for _ in 0..1 + rand(7) {
            at += rand(8);
            let call = at.saturating_sub(rand(5));
            let ret = at + rand(5);
            let v = VALUES[rand(3) as usize];
            let mut after = state;
            let (input, mut out) = match rand(4) {
                0 => (Input::Get, Output::Get(state)),
                1 => {
                    after = Some(v);
                    (Input::Put(v), Output::Put)
                }
                2 => {
                    let expect = VALUES[rand(3) as usize];
                    let ok = state == Some(expect);
                    if ok {
                        after = Some(v);
                    }
                    (Input::Cas { expect, new: v }, Output::Cas(ok))
                }
                _ => {
                    after = None;
                    (Input::Delete, Output::Delete(state.is_some()))
                }
            };
            let lost = input != Input::Get && rand(3) == 0;
            if !lost || rand(2) == 0 {
                state = after;
            }
            if rand(6) == 0 {
                out = match out {
                    Output::Get(_) => Output::Get([None, Some("a"), Some("b")][rand(3) as usize]),
                    Output::Cas(ok) => Output::Cas(!ok),
                    Output::Delete(d) => Output::Delete(!d),
                    Output::Put => Output::Put,
                };
            }
            h.push(Op {
                call,
                done: (!lost).then_some((ret, out)),
                input,
            });
        }
        h
    }

    #[test]
    fn agrees_with_brute_force() {
        let mut seed = 11u64;
        let mut rand = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let (mut yes, mut no, mut cut) = (0, 0, 0);
        for _ in 0..30_000 {
            let h = random_history(&mut rand);
            let expected = brute(&h, &mut vec![false; h.len()], None);
            let report = check(&h, None, BUDGET);
            let got = match report.verdict {
                Verdict::Linearizable => true,
                Verdict::NotLinearizable { .. } => false,
                Verdict::Inconclusive => panic!("{h:?}: {report:?}"),
            };
            assert_eq!(got, expected, "{h:#?}\n{report:?}");
            if expected {
                yes += 1;
            } else {
                no += 1;
            }
            if report.segments > 2 && h.iter().any(|op| op.done.is_none()) {
                cut += 1;
            }
        }
        // Both answers, and histories cut across unknown writes, in good number.
        assert!(yes > 5000 && no > 5000 && cut > 2000, "{yes} {no} {cut}");
    }
}
