//! The thread table and the futex table, and what each thread instruction
//! does to them: the semantics every thread model shares. A model runs a
//! thread's engine until it stops before a thread instruction, then calls
//! [`Table::perform`], which says whether the thread goes on, gives up the
//! processor, blocks, or ends (and with it, perhaps, the program).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::addr_map::AddrMap;
use crate::interp::{trap_at, Outcome};
use crate::isa::{Instr, Opcode, NUM_REGS, SP};
use crate::machine::{sys, Machine, SysIo, Syscall};
use crate::trap::{JoinError, TrapKind};

use super::stats::ThreadStats;

/// What a guest thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Runnable (in a run queue, or running).
    Ready,
    /// In `join`, until thread `id` ends.
    Joining(u64),
    /// In `wait`, until a `wake` on this address.
    Waiting(u64),
    /// In a jacketed `sys 7`, until this instant.
    Sleeping(Instant),
    /// In a jacketed `sys 2`, until stdin has input (it then runs the
    /// `sys 2` again, which no longer blocks).
    Reading,
    /// Ended with `texit`.
    Done,
}

/// One guest thread: its registers while it is not running, and its state.
#[derive(Clone, Debug)]
pub struct GuestThread {
    pub regs: [u64; NUM_REGS],
    pub pc: u64,
    pub state: State,
    /// The pc of the instruction it blocked in (for the deadlock report).
    pub blocked_at: u64,
    /// The register a blocking `join` or `wait` writes when it completes.
    pub dest: u8,
    pub exit_value: Option<u64>,
    /// A `join` of this thread was made (a second one is a trap).
    pub joined: bool,
    /// The thread blocked in a `join` of this one.
    pub joiner: Option<u64>,
    pub stats: ThreadStats,
}

/// What the thread that stopped before a thread instruction does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The instruction is done; the thread goes on.
    Continue,
    /// The instruction is done (`yield`); the thread gives up the processor.
    Yield,
    /// The instruction retired and the thread is blocked (see its state).
    Block,
    /// The thread ended; others remain.
    Ended,
    /// The program ended: the last thread's `texit`, or a trap.
    Finished(Outcome),
}

/// Every guest thread and futex queue of a run.
#[derive(Debug)]
pub struct Table {
    pub threads: Vec<GuestThread>,
    /// Waiters per address, in the order they came (woken first-in first-out).
    futex: AddrMap<VecDeque<u64>>,
    live: usize,
    max_threads: usize,
    /// Jacketed `sys 7` and `sys 2`: park the guest thread, not the worker.
    pub jacket: bool,
    started: Instant,
    /// Threads made ready since the model last took them (spawned or woken).
    pub made_ready: Vec<u64>,
    pub wakes: u64,
    pub blocks: u64,
    /// Threads sleeping or reading (jacketed).
    timed: usize,
    /// Threads in `join` or `wait`.
    blocked: usize,
    /// Threads whose OS thread was started (`--threads kernel`): ids
    /// from here to the table's end are new.
    pub launched: usize,
    /// Code the scheduler's own syscalls overwrote (a read into code),
    /// which the engines must see.
    pub code_writes: Vec<(u64, u64)>,
}

impl Table {
    /// A table holding the main thread (id 0), running.
    pub fn new(max_threads: usize, jacket: bool, started: Instant) -> Self {
        let main = GuestThread::new([0; NUM_REGS], 0, Duration::ZERO);
        let mut t = Table {
            threads: vec![main],
            futex: AddrMap::default(),
            live: 1,
            max_threads: max_threads.max(1),
            jacket,
            started,
            made_ready: Vec::new(),
            wakes: 0,
            blocks: 0,
            code_writes: Vec::new(),
            timed: 0,
            blocked: 0,
            launched: 1,
        };
        t.threads[0].stats.first_run_ns = Some(0);
        t
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Threads not ended.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Whether any parked thread will become ready by itself (a sleeper, a
    /// reader), so that no runnable thread is not yet a deadlock.
    pub fn has_timed_waiters(&self) -> bool {
        self.timed > 0
    }

    /// Whether every live thread waits in `join` or `wait`.
    pub fn all_blocked(&self) -> bool {
        self.live > 0 && self.blocked == self.live
    }

    /// Makes ready the sleepers whose time came and the readers whose input
    /// is there; returns the earliest deadline still ahead.
    pub fn poll_timed(&mut self, io: &mut dyn SysIo) -> Option<Instant> {
        if self.timed == 0 {
            return None;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let ready_input = self.threads.iter().any(|t| t.state == State::Reading) && io.read_ready();
        for (id, t) in self.threads.iter_mut().enumerate() {
            match t.state {
                State::Sleeping(at) if at <= now => t.state = State::Ready,
                State::Sleeping(at) => {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    continue;
                }
                State::Reading if ready_input => t.state = State::Ready,
                _ => continue,
            }
            self.made_ready.push(id as u64);
            self.timed -= 1;
        }
        next
    }

    /// The deadlock trap, and one line per blocked thread saying what it
    /// waits on.
    pub fn deadlock(&self, m: &Machine, current: u64) -> (Outcome, Vec<String>) {
        let lines = self
            .threads
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state != State::Done)
            .map(|(id, t)| {
                let what = match t.state {
                    State::Joining(other) => format!("join of thread {other}"),
                    State::Waiting(addr) => format!("wait on {addr:#x}"),
                    State::Sleeping(_) => "sleep".to_string(),
                    State::Reading => "read".to_string(),
                    State::Ready | State::Done => "nothing".to_string(),
                };
                format!("thread {id} at pc {:#x}: {what}", t.blocked_at)
            })
            .collect();
        let pc = self.threads.get(current as usize).map_or(m.pc, |t| t.blocked_at);
        let kind = TrapKind::Deadlock { threads: self.live as u64 };
        (Outcome::Trapped(trap_at(m, kind, pc)), lines)
    }

    /// Performs the thread instruction (or jacketed syscall) at `m.pc` for
    /// thread `me`, whose registers are `m.regs`.
    pub fn perform(&mut self, me: u64, m: &mut Machine, io: &mut dyn SysIo) -> Step {
        let Some(Ok(i)) = m.fetch(m.pc).map(Instr::decode) else {
            return trapped(m, TrapKind::NoScheduler);
        };
        let (a, b, c) = (usize::from(i.a), usize::from(i.b), usize::from(i.c));
        let step = match i.op {
            Opcode::Spawn => self.spawn(m, m.regs[b], m.regs[c]).map(|id| {
                m.regs[a] = id;
                Step::Continue
            }),
            Opcode::Join => self.join(me, m, m.regs[b], i.a).map(|done| match done {
                Some(v) => {
                    m.regs[a] = v;
                    Step::Continue
                }
                None => Step::Block,
            }),
            Opcode::Yield => Ok(Step::Yield),
            Opcode::TExit => Ok(self.exit(me, m.regs[a])),
            Opcode::Tid => {
                m.regs[a] = me;
                Ok(Step::Continue)
            }
            Opcode::Wait => {
                let addr = m.regs[b].wrapping_add(i.imm as i64 as u64);
                m.atomic_load(addr).map(|v| {
                    if v != m.regs[c] {
                        m.regs[a] = 1;
                        return Step::Continue;
                    }
                    self.futex.entry(addr).or_default().push_back(me);
                    self.blocked += 1;
                    self.park(me, m, State::Waiting(addr), i.a)
                })
            }
            Opcode::Wake => {
                let addr = m.regs[b].wrapping_add(i.imm as i64 as u64);
                m.atomic_addr(addr).map(|_| {
                    m.regs[a] = self.wake(addr, m.regs[c]);
                    Step::Continue
                })
            }
            Opcode::Sys if i.imm == sys::SLEEP => {
                let until = Instant::now() + Duration::from_micros(m.regs[1]);
                m.regs[0] = 0;
                self.timed += 1;
                Ok(self.park(me, m, State::Sleeping(until), 0))
            }
            Opcode::Sys if i.imm == sys::READ && !io.read_ready() => {
                // Parked before the call, which runs again once input is there.
                let t = &mut self.threads[me as usize];
                t.state = State::Reading;
                t.blocked_at = m.pc;
                self.blocks += 1;
                self.timed += 1;
                return Step::Block;
            }
            Opcode::Sys => match m.syscall(io, i.imm) {
                Ok(Syscall::Exit(s)) => return retire_and(m, Step::Finished(Outcome::Exited(s))),
                Ok(Syscall::Return) => return retire_and(m, Step::Finished(Outcome::Returned)),
                Ok(Syscall::Wrote { addr, len }) => {
                    if m.touches_code(addr, len) {
                        self.code_writes.push((addr, len));
                    }
                    Ok(Step::Continue)
                }
                Ok(Syscall::Done) => Ok(Step::Continue),
                Err(k) => Err(k),
            },
            _ => Err(TrapKind::NoScheduler),
        };
        match step {
            Ok(Step::Finished(o)) => Step::Finished(o),
            Ok(s) => retire_and(m, s),
            Err(kind) => trapped(m, kind),
        }
    }

    fn spawn(&mut self, m: &Machine, entry: u64, arg: u64) -> Result<u64, TrapKind> {
        if !m.is_code_addr(entry) {
            return Err(TrapKind::BadJumpTarget(entry));
        }
        if self.live >= self.max_threads {
            return Err(TrapKind::TooManyThreads { max: self.max_threads as u64 });
        }
        let mut regs = [0; NUM_REGS];
        regs[1] = arg;
        regs[usize::from(SP)] = arg;
        let id = self.threads.len() as u64;
        let spawned = Duration::from_nanos(self.now_ns());
        let mut t = GuestThread::new(regs, entry, spawned);
        t.stats.id = id;
        self.threads.push(t);
        self.live += 1;
        self.made_ready.push(id);
        Ok(id)
    }

    /// `Some(exit value)` at once, or `None`: `me` is parked.
    fn join(&mut self, me: u64, m: &Machine, id: u64, dest: u8) -> Result<Option<u64>, TrapKind> {
        let why = if id == me {
            Some(JoinError::Itself)
        } else {
            match self.threads.get(id as usize) {
                None => Some(JoinError::Unknown),
                Some(t) if t.joined => Some(JoinError::AlreadyJoined),
                Some(_) => None,
            }
        };
        if let Some(why) = why {
            return Err(TrapKind::BadJoin { id, why });
        }
        let target = &mut self.threads[id as usize];
        target.joined = true;
        if let Some(v) = target.exit_value {
            return Ok(Some(v));
        }
        target.joiner = Some(me);
        self.blocked += 1;
        self.park(me, m, State::Joining(id), dest);
        Ok(None)
    }

    /// Blocks `me` (its instruction retires now; `dest` gets its result
    /// when it completes).
    fn park(&mut self, me: u64, m: &Machine, state: State, dest: u8) -> Step {
        let t = &mut self.threads[me as usize];
        t.state = state;
        t.blocked_at = m.pc;
        t.dest = dest;
        self.blocks += 1;
        Step::Block
    }

    /// Ends `me` with `value`, completing the join waiting for it.
    fn exit(&mut self, me: u64, value: u64) -> Step {
        let now = self.now_ns();
        let t = &mut self.threads[me as usize];
        t.state = State::Done;
        t.exit_value = Some(value);
        t.stats.end_ns = Some(now);
        self.live -= 1;
        if let Some(j) = t.joiner {
            let t = &mut self.threads[j as usize];
            t.regs[usize::from(t.dest)] = value;
            t.state = State::Ready;
            self.made_ready.push(j);
            self.wakes += 1;
            self.blocked -= 1;
        }
        if self.live == 0 {
            Step::Finished(Outcome::Exited((value & 0xff) as i32))
        } else {
            Step::Ended
        }
    }

    /// Wakes up to `n` waiters on `addr`; returns how many.
    fn wake(&mut self, addr: u64, n: u64) -> u64 {
        let Some(q) = self.futex.get_mut(&addr) else { return 0 };
        let mut woken = 0;
        while woken < n {
            let Some(id) = q.pop_front() else { break };
            let t = &mut self.threads[id as usize];
            t.regs[usize::from(t.dest)] = 0;
            t.state = State::Ready;
            self.made_ready.push(id);
            self.blocked -= 1;
            woken += 1;
        }
        // (an empty queue stays for the next wait on that address, unless
        // the program waited on very many)
        if q.is_empty() && self.futex.len() > 4096 {
            self.futex.remove(&addr);
        }
        self.wakes += woken;
        woken
    }
}

impl GuestThread {
    fn new(regs: [u64; NUM_REGS], pc: u64, spawned: Duration) -> Self {
        GuestThread {
            regs,
            pc,
            state: State::Ready,
            blocked_at: pc,
            dest: 0,
            exit_value: None,
            joined: false,
            joiner: None,
            stats: ThreadStats {
                spawn_ns: u64::try_from(spawned.as_nanos()).unwrap_or(u64::MAX),
                ..Default::default()
            },
        }
    }
}

/// The instruction retires (pc to the next one) and `step` follows.
fn retire_and(m: &mut Machine, step: Step) -> Step {
    m.pc = m.pc.wrapping_add(crate::isa::INSTR_SIZE);
    m.retired += 1;
    step
}

fn trapped(m: &Machine, kind: TrapKind) -> Step {
    Step::Finished(Outcome::Trapped(trap_at(m, kind, m.pc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_costs_a_few_hundred_bytes_of_table() {
        // (ids are never reused: every thread ever made keeps its entry)
        let size = std::mem::size_of::<GuestThread>();
        assert!(size <= 320, "{size} bytes per thread");
    }
}
