//! A linearizability checker for one register with compare-and-set (one etcd key), after
//! Wing & Gong's search with Lowe's memoisation (the algorithm of Knossos and Porcupine).
//!
//! Why here: the chaos soak records what clients saw while members died, and must decide
//! whether some total order of those operations, each taking effect at one instant between its
//! invocation and its completion, explains every answer. etcd keys are independent registers,
//! so the history is checked one key at a time (P-compositionality).
//!
//! An operation whose outcome is unknown (it failed or timed out: a write may or may not have
//! been applied) has no completion: it may take effect at any point after its invocation, or
//! never. The search only has to place the completed operations; an unknown write is placed
//! only where it explains something. Unknown reads say nothing and are left out by the caller.
//!
//! The search is a depth-first walk over "which pending operation takes effect next", keeping
//! every (set of operations placed, register value) it has already explored (the set as a
//! 128-bit hash), so each such configuration is explored once: a few thousand operations per
//! key take well under a second.

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
    /// No order does. `stuck` is the index of an operation that could not be placed at the
    /// deepest point the search reached, after `placed` completed operations.
    NotLinearizable {
        /// The completed operation the search could not place.
        stuck: usize,
        /// How many completed operations were placed at that point.
        placed: usize,
    },
    /// The search gave up after exploring too many configurations.
    Inconclusive,
}

/// The verdict and what the search cost.
#[derive(Clone, Debug)]
pub struct Report {
    /// The answer.
    pub verdict: Verdict,
    /// Configurations explored.
    pub explored: u64,
}

/// The register's value, as an interned id (`None`: no key).
type State = Option<u32>;

/// Interned input; `u32` ids stand for values.
#[derive(Clone, Copy, Debug)]
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
/// unplaced. Memoising on the hash instead of the set keeps memory per configuration constant,
/// so histories of tens of thousands of operations per key fit; two different sets sharing a
/// hash (which would prune a configuration unexplored) has odds of about 2^-128 per pair.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
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

/// Invocations and completions in time order, as a doubly linked list from which placed
/// operations are unlinked (and relinked when the search backtracks).
struct Events {
    /// Per event: (operation, is a completion).
    event: Vec<(usize, bool)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per operation: its invocation's and completion's event.
    call_of: Vec<usize>,
    ret_of: Vec<Option<usize>>,
}

impl Events {
    /// Event `0` is the list's head; events are numbered from 1.
    fn new(calls: &[u64], rets: &[Option<u64>]) -> Self {
        let mut timed: Vec<(u64, bool, usize)> = Vec::new();
        for (op, (&call, ret)) in calls.iter().zip(rets).enumerate() {
            timed.push((call, false, op));
            if let Some(ret) = ret {
                timed.push((*ret, true, op));
            }
        }
        // On equal times, invocations first: the operations then count as concurrent, the
        // lenient reading of a tie.
        timed.sort();
        let n = timed.len() + 1;
        let mut event = vec![(usize::MAX, false)];
        let mut call_of = vec![0; calls.len()];
        let mut ret_of = vec![None; calls.len()];
        for (i, &(_, is_ret, op)) in timed.iter().enumerate() {
            event.push((op, is_ret));
            if is_ret {
                ret_of[op] = Some(i + 1);
            } else {
                call_of[op] = i + 1;
            }
        }
        // `n` stands for the end of the list.
        let next = (1..=n).collect();
        let prev = (0..n).map(|i| i.wrapping_sub(1)).collect();
        Events {
            event,
            next,
            prev,
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
        if let Some(r) = self.ret_of[op] {
            self.unlink(r);
        }
    }

    /// Undoes [`place`](Self::place) (in reverse order of the places).
    fn unplace(&mut self, op: usize) {
        if let Some(r) = self.ret_of[op] {
            self.relink(r);
        }
        self.relink(self.call_of[op]);
    }

    /// The operations that may take effect next: those invoked before the first pending
    /// completion. Completed ones first (they must be placed), then unknown ones. Also the
    /// operation of that first completion, if any.
    fn candidates(&self, unknown: &[bool]) -> (Vec<usize>, Option<usize>) {
        let mut known = Vec::new();
        let mut maybe = Vec::new();
        let mut e = self.next[0];
        while e != self.end() {
            let (op, is_ret) = self.event[e];
            if is_ret {
                known.extend(maybe);
                return (known, Some(op));
            }
            if unknown[op] {
                maybe.push(op);
            } else {
                known.push(op);
            }
            e = self.next[e];
        }
        known.extend(maybe);
        (known, None)
    }
}

/// One level of the depth-first search.
struct Frame {
    candidates: Vec<usize>,
    tried: usize,
    state: State,
    placed: Option<usize>,
}

/// Checks `history` against a register that starts as `initial`; gives up after `budget`
/// explored configurations.
pub fn check<V: Clone + Eq + Hash>(history: &[Op<V>], initial: Option<V>, budget: u64) -> Report {
    let mut ids: HashMap<V, u32> = HashMap::new();
    let mut id = |v: &V| {
        let n = ids.len() as u32;
        *ids.entry(v.clone()).or_insert(n)
    };
    let initial: State = initial.as_ref().map(&mut id);
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
                Output::Get(v) => Out::Get(v.as_ref().map(&mut id)),
                Output::Put => Out::Put,
                Output::Cas(ok) => Out::Cas(*ok),
                Output::Delete(deleted) => Out::Delete(*deleted),
            })
        })
        .collect();
    let unknown: Vec<bool> = history.iter().map(|op| op.done.is_none()).collect();
    let calls: Vec<u64> = history.iter().map(|op| op.call).collect();
    let rets: Vec<Option<u64>> = history
        .iter()
        .map(|op| op.done.as_ref().map(|d| d.0))
        .collect();
    let must_place = unknown.iter().filter(|u| !**u).count();

    let mut events = Events::new(&calls, &rets);
    let mut placed_set = OpSet(0);
    let mut seen: HashSet<(OpSet, State)> = HashSet::new();
    let mut placed = 0usize;
    let mut deepest = (0usize, None);
    let mut explored = 0u64;
    let report = |verdict, explored| Report { verdict, explored };
    if must_place == 0 {
        return report(Verdict::Linearizable, 0);
    }

    let (candidates, first) = events.candidates(&unknown);
    deepest.1 = first;
    let mut stack = vec![Frame {
        candidates,
        tried: 0,
        state: initial,
        placed: None,
    }];
    while let Some(frame) = stack.last_mut() {
        if let Some(op) = frame.placed.take() {
            events.unplace(op);
            placed_set.toggle(op);
            if !unknown[op] {
                placed -= 1;
            }
        }
        let state = frame.state;
        let mut next = None;
        while frame.tried < frame.candidates.len() {
            let op = frame.candidates[frame.tried];
            frame.tried += 1;
            let Some(after) = step(state, inputs[op], outputs[op]) else {
                continue;
            };
            // An unknown write that changes nothing is better left unplaced: placing it
            // later (or never) can explain everything placing it now can.
            if unknown[op] && after == state {
                continue;
            }
            placed_set.toggle(op);
            explored += 1;
            if seen.insert((placed_set, after)) {
                next = Some((op, after));
                break;
            }
            placed_set.toggle(op);
        }
        if explored > budget {
            return report(Verdict::Inconclusive, explored);
        }
        let Some((op, after)) = next else {
            stack.pop();
            continue;
        };
        frame.placed = Some(op);
        events.place(op);
        if !unknown[op] {
            placed += 1;
        }
        if placed == must_place {
            return report(Verdict::Linearizable, explored);
        }
        let (candidates, first) = events.candidates(&unknown);
        if placed > deepest.0 {
            deepest = (placed, first);
        }
        stack.push(Frame {
            candidates,
            tried: 0,
            state: after,
            placed: None,
        });
    }
    report(
        Verdict::NotLinearizable {
            stuck: deepest.1.unwrap_or(0),
            placed: deepest.0,
        },
        explored,
    )
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
        assert_eq!(verdict(&h), Verdict::Linearizable);
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
        // Seen, overwritten, then seen again: that would be a second application.
        let h = vec![
            unknown(0, Input::Put("b")),
            done(10, 11, Input::Get, Output::Get(Some("b"))),
            done(12, 13, Input::Put("c"), Output::Put),
            done(14, 15, Input::Get, Output::Get(Some("b"))),
        ];
        assert!(matches!(verdict(&h), Verdict::NotLinearizable { .. }));
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

    /// A linearizable history of 3000 operations from a known order, each operation's window
    /// around its point so that up to ~8 overlap, some writes with unknown outcome.
    fn long_history() -> Vec<Op<String>> {
        let mut h: Vec<Op<String>> = Vec::new();
        let mut state: Option<String> = None;
        let mut seed = 7u64;
        let mut rand = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for i in 0..3000u64 {
            let at = i * 10;
            let call = at.saturating_sub(rand(40));
            let ret = at + rand(40);
            let (input, out) = match rand(10) {
                0..=3 => (Input::Get, Output::Get(state.clone())),
                4..=6 => {
                    state = Some(format!("v{i}"));
                    (Input::Put(format!("v{i}")), Output::Put)
                }
                7 | 8 => {
                    let expect = match rand(2) {
                        0 => state.clone().unwrap_or_default(),
                        _ => "x".into(),
                    };
                    let ok = state.as_deref() == Some(expect.as_str());
                    if ok {
                        state = Some(format!("v{i}"));
                    }
                    let new = format!("v{i}");
                    (Input::Cas { expect, new }, Output::Cas(ok))
                }
                _ => {
                    let deleted = state.take().is_some();
                    (Input::Delete, Output::Delete(deleted))
                }
            };
            let lost = rand(50) == 0 && !matches!(input, Input::Get);
            h.push(Op {
                call,
                done: (!lost).then_some((ret, out)),
                input,
            });
        }
        h
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        let report = check(&long_history(), None, BUDGET);
        assert_eq!(report.verdict, Verdict::Linearizable, "{report:?}");
    }

    #[test]
    fn one_bad_read_in_a_long_history_is_found() {
        let mut h = long_history();
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
}
