// SPDX-License-Identifier: GPL-2.0

//! The exhaustive driver.
//!
//! It visits every sequence of events up to a given length from [`Machine::initial`]. A
//! state is the whole [`Machine`], and what happens next depends on nothing else, so two
//! sequences that reach the same state have the same continuations: each state is expanded
//! once, at the first (shortest) depth it is reached, and every event enabled in it is
//! applied and checked. Expanding every state reached in fewer than `max_len` events checks
//! every transition of every sequence of at most `max_len` events. The search is breadth
//! first, so the first counterexample found is a shortest one. When no new state appears
//! before the depth limit the graph is closed: every reachable state has been expanded, and
//! the result holds for sequences of any length.
//!
//! The number of sequences covered is counted exactly, by counting the paths of each length
//! through the explored graph.

use super::check::Violation;
use super::kernel::{events, Event, Machine, Run};
use super::Config;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::string::String;
use std::vec;
use std::vec::Vec;

/// A small multiply-rotate hash for [`Key`]s: the default SipHash is slow in a debug build,
/// and the keys are not chosen by an adversary.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Any odd multiplier with well-mixed bits will do.
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x7a3b_59c1_e28d_4f05)
            .rotate_left(27);
    }

    fn finish(&self) -> u64 {
        self.0 ^ self.0 >> 31
    }
}

/// A [`Machine`] packed into 320 bits, for the state index: the low 64 bits of each CPU's
/// TLB entries, then the rest of each CPU, then ASI's state and the memory.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key([u64; 5]);

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for w in self.0 {
            h.write_u64(w);
        }
    }
}

/// Packs every field of `m` (the equality of keys is the equality of machines of one run,
/// which `packing_is_exact` checks).
fn pack(m: &Machine) -> Key {
    let mut key = [0u64; 5];
    let mut asi = 0u64;
    for (n, cpu) in m.cpus.iter().enumerate() {
        let (entries, psc, cr3) = cpu.hw.key();
        // Truncation intended: the entries are 80 bits, split 64 + 16.
        key[n] = entries as u64;
        let t = &cpu.tlb;
        let mut rest = (entries >> 64) as u64;
        rest |= u64::from(psc) << 16;
        rest |= u64::from(cr3) << 30;
        rest |= u64::from(cpu.online) << 36;
        rest |= (t.loaded_mm as u64) << 37;
        rest |= u64::from(t.loaded_mm_asid) << 39;
        rest |= u64::from(t.next_asid) << 41;
        rest |= u64::from(t.invalidate_other) << 43;
        rest |= u64::from(t.is_lazy) << 44;
        for (i, ctx) in t.ctxs.iter().enumerate() {
            let id = ctx.ctx_id.map_or(0, |mm| mm as u64 + 1);
            rest |= (id | u64::from(ctx.behind) << 2) << (45 + 4 * i);
        }
        key[2 + n] = rest;
        let a = &cpu.asi;
        // full_cr3's PCID is 0 or the full PCID of an ASID, at most 3.
        let mut s = u64::from(a.restricted) | (a.full_cr3.root as u64) << 1;
        s |= u64::from(a.full_cr3.pcid) << 4 | u64::from(a.stale_full) << 6;
        s |= u64::from(a.stale_ns) << 9;
        asi |= s << (13 * n);
    }
    asi |= u64::from(m.mem.dm_present) << 26 | (m.mem.page as u64) << 27;
    asi |= u64::from(m.mem.vfree_pending) << 29;
    key[4] = asi;
    Key(key)
}

/// The key of the class of `m` under swapping the two CPUs.
///
/// Nothing in the model depends on which CPU is which: the events of each CPU are the same,
/// the kernel's events treat every online CPU alike, and what a flush does on one CPU does not
/// depend on the other. So a machine and its mirror image have the same futures, up to the
/// CPU numbers, and one of them is enough. The stored machine is the one first reached, so
/// the path recorded to it replays exactly.
fn class_key(m: &Machine) -> Key {
    let mut mirror = *m;
    mirror.cpus.swap(0, 1);
    pack(m).min(pack(&mirror))
}

/// A shortest sequence of events that breaks an invariant.
#[derive(Debug)]
pub(super) struct Counterexample {
    /// The events.
    pub(super) events: Vec<Event>,
    /// The states before each event, and the state after the last one.
    pub(super) states: Vec<Machine>,
    /// The violations the last event produced.
    pub(super) violations: Vec<Violation>,
    /// The replay, one line per event and per CR3 write, with the violations.
    pub(super) text: String,
}

/// What an exploration found.
#[derive(Debug)]
pub(super) struct Report {
    /// The length limit.
    pub(super) max_len: usize,
    /// Distinct states reached, a machine and its mirror image (the CPUs swapped) counted
    /// once.
    pub(super) states: usize,
    /// States expanded (all their events applied and checked).
    pub(super) expanded: usize,
    /// Events applied.
    pub(super) transitions: u64,
    /// Whether every reachable state was expanded before the length limit.
    pub(super) closed: bool,
    /// The greatest depth at which a new state was found (where the search stopped, when it
    /// stopped at a target).
    pub(super) depth: usize,
    /// Event sequences of 1 to `max_len` events covered (0 unless counted).
    pub(super) sequences: u128,
    /// Events that broke an invariant.
    pub(super) violating: u64,
    /// A shortest counterexample: the first one of the target kind if a target was given,
    /// else the first one of any kind.
    pub(super) counterexample: Option<Counterexample>,
}

/// Replays `events` from the initial state, with the log on.
pub(super) fn replay(cfg: &Config, events: Vec<Event>) -> Counterexample {
    let mut m = Machine::initial(cfg);
    let mut states = vec![m];
    let mut text = String::new();
    let mut violations = Vec::new();
    for (n, &ev) in events.iter().enumerate() {
        let mut run = Run::new(&m, cfg, true);
        run.apply(ev);
        for (i, line) in run.log.take().unwrap_or_default().into_iter().enumerate() {
            if i == 0 {
                text.push_str(&std::format!("{:2}. ", n + 1));
            }
            text.push_str(&line);
            text.push('\n');
        }
        violations = run.found;
        m = run.m;
        states.push(m);
    }
    Counterexample {
        events,
        states,
        violations,
        text,
    }
}

/// A kind of counterexample to look for.
///
/// It judges the violation only, not the path to it: the search keeps one path per state, so
/// a test of the path would depend on which one it kept.
pub(super) type Target<'t> = &'t dyn Fn(&Violation) -> bool;

/// Explores every sequence of at most `max_len` events under `cfg`. With a `target`, stops at
/// the first violation it accepts. With `count_len > 0`, counts the sequences of 1 to
/// `count_len` events (which needs `count_len <= max_len` unless the graph closes).
pub(super) fn explore(
    cfg: &Config,
    max_len: usize,
    target: Option<Target<'_>>,
    count_len: usize,
) -> Report {
    let count = count_len > 0;
    let init = Machine::initial(cfg);
    let mut index: HashMap<Key, u32, BuildHasherDefault<KeyHasher>> = HashMap::default();
    index.insert(class_key(&init), 0);
    let mut states = vec![init];
    let mut parent: Vec<Option<(u32, Event)>> = vec![None];
    let mut depth: Vec<u8> = vec![0];
    let mut edges: Vec<u32> = Vec::new();
    let mut edge_start: Vec<usize> = Vec::new();
    let mut evs = Vec::new();
    let mut transitions = 0u64;
    let mut violating = 0u64;
    let mut first: Option<(usize, Event)> = None;
    let path = |parent: &[Option<(u32, Event)>], mut s: usize, last: Event| {
        let mut evs = vec![last];
        while let Some((p, e)) = parent[s] {
            evs.push(e);
            s = p as usize;
        }
        evs.reverse();
        evs
    };
    let mut i = 0;
    while i < states.len() {
        if usize::from(depth[i]) >= max_len {
            break;
        }
        edge_start.push(edges.len());
        events(&states[i], cfg, &mut evs);
        for &ev in &evs {
            let mut run = Run::new(&states[i], cfg, false);
            run.apply(ev);
            transitions += 1;
            if !run.found.is_empty() {
                violating += 1;
                if first.is_none() {
                    first = Some((i, ev));
                }
                if let Some(t) = target {
                    if run.found.iter().any(t) {
                        let c = replay(cfg, path(&parent, i, ev));
                        return Report {
                            max_len,
                            states: states.len(),
                            expanded: i,
                            transitions,
                            closed: false,
                            depth: usize::from(depth[i]) + 1,
                            sequences: 0,
                            violating,
                            counterexample: Some(c),
                        };
                    }
                }
            }
            let key = class_key(&run.m);
            let id = match index.get(&key) {
                Some(&id) => id,
                None => {
                    // At most a few million states: the index fits.
                    let id = states.len() as u32;
                    index.insert(key, id);
                    states.push(run.m);
                    parent.push(Some((i as u32, ev)));
                    depth.push(depth[i] + 1);
                    id
                }
            };
            if count {
                edges.push(id);
            }
        }
        i += 1;
    }
    let expanded = i;
    let closed = expanded == states.len();
    edge_start.push(edges.len());
    let mut sequences = 0u128;
    if count {
        assert!(
            closed || count_len <= max_len,
            "cannot count past the explored depth"
        );
        let mut cnt = vec![0u128; states.len()];
        cnt[0] = 1;
        for _ in 0..count_len {
            let mut next = vec![0u128; states.len()];
            for (s, &n) in cnt.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                assert!(
                    s < expanded,
                    "a state reached early enough was not expanded"
                );
                for &t in &edges[edge_start[s]..edge_start[s + 1]] {
                    next[t as usize] = next[t as usize].checked_add(n).expect("overflow");
                }
            }
            let level = next.iter().try_fold(0u128, |a, &n| a.checked_add(n));
            sequences = sequences
                .checked_add(level.expect("overflow"))
                .expect("overflow");
            cnt = next;
        }
    }
    let counterexample = if target.is_none() {
        first.map(|(s, ev)| replay(cfg, path(&parent, s, ev)))
    } else {
        None
    };
    Report {
        max_len,
        states: states.len(),
        expanded,
        transitions,
        closed,
        depth: depth.last().map_or(0, |&d| usize::from(d)),
        sequences,
        violating,
        counterexample,
    }
}

/// The plain depth-first enumeration the search replaces, for checking it: every sequence of
/// 1 to `max_len` events, each applied from scratch. Returns the number of sequences and the
/// length of the shortest one that breaks an invariant.
pub(super) fn enumerate(cfg: &Config, max_len: usize) -> (u128, Option<usize>) {
    fn walk(
        cfg: &Config,
        m: &Machine,
        len: usize,
        max_len: usize,
        count: &mut u128,
        shortest: &mut Option<usize>,
    ) {
        if len == max_len {
            return;
        }
        let mut evs = Vec::new();
        events(m, cfg, &mut evs);
        for ev in evs {
            let mut run = Run::new(m, cfg, false);
            run.apply(ev);
            *count += 1;
            if !run.found.is_empty() && shortest.is_none_or(|s| len + 1 < s) {
                *shortest = Some(len + 1);
            }
            walk(cfg, &run.m, len + 1, max_len, count, shortest);
        }
    }
    let mut count = 0;
    let mut shortest = None;
    walk(
        cfg,
        &Machine::initial(cfg),
        0,
        max_len,
        &mut count,
        &mut shortest,
    );
    (count, shortest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlbmodel::{MAIN, PCID_OFF, TRACKED, UPSTREAM};

    /// Two machines reached in one run have equal keys only if they are equal.
    #[test]
    fn packing_is_exact() {
        for cfg in [PCID_OFF, MAIN, TRACKED, UPSTREAM] {
            let mut seen: HashMap<Key, Machine> = HashMap::default();
            let mut level = vec![Machine::initial(&cfg)];
            let mut evs = Vec::new();
            for _ in 0..4 {
                let mut next = Vec::new();
                for m in &level {
                    events(m, &cfg, &mut evs);
                    for &ev in &evs {
                        let mut run = Run::new(m, &cfg, false);
                        run.apply(ev);
                        match seen.get(&pack(&run.m)) {
                            Some(old) => assert_eq!(*old, run.m, "{}", cfg.name),
                            None => {
                                seen.insert(pack(&run.m), run.m);
                                next.push(run.m);
                            }
                        }
                    }
                }
                level = next;
            }
            assert!(seen.len() > 100);
        }
    }
}
