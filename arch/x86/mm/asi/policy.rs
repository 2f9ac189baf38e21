// SPDX-License-Identifier: GPL-2.0

//! The taint model of ASI: which mitigations a change of address space or of running code needs.
//!
//! With ASI the kernel runs in the nonsensitive address space, which maps no user
//! data, and switches to the sensitive (full) space only when it must touch user data. Code the
//! kernel does not trust, user code and (with KVM) guests, shares the CPU with it, and some CPU
//! state outlives the code that filled it. This file decides, per CPU, which of that state has to
//! be cleared at each step so that it is cleared when it matters and only then.
//!
//! # Taints
//!
//! A [`Taint`] names one CPU structure whose content outlives the code that filled it:
//!
//! - Control state. [`Taint::Predictors`] is the indirect branch predictors with the branch
//!   history, [`Taint::Rsb`] the return stack buffer. Code that trains them can steer the
//!   speculative execution of the code that runs after it. Training by the kernel is harmless;
//!   training by user code or a guest is an attack on whatever runs next with access to secrets.
//! - Data state. [`Taint::L1d`] is the L1 data cache, [`Taint::CpuBuffers`] the fill, store and
//!   load-port buffers. They hold recently touched data, which the code running next may sample
//!   speculatively (L1TF, MDS and their relatives). They matter when they hold user data that the
//!   code running next may not see.
//!
//! For each structure the CPU state records who left state in it since it was last cleared
//! ([`Origins`]): per [`Source`] (the kernel in the sensitive space, user code, a guest), the mm
//! the state was left for ([`Owners`]: nobody, exactly one mm, or several or an unknown one).
//! Mms are told apart by an [`MmId`].
//!
//! Who sets what:
//!
//! - User code of mm X, while it runs, trains the structures its class lists in
//!   [`ClassPolicy::taints`] (all control state): recorded as user code of X. A guest of X
//!   likewise, recorded as a guest of X.
//! - The kernel in the sensitive space with mm X current may touch X's user data, so whenever the
//!   CPU is in the sensitive space with X current, the structures in [`SENSITIVE_KERNEL_TAINTS`]
//!   (all data state) are recorded as holding the kernel's data of X.
//! - An interrupt or NMI whose handler needs the sensitive space may touch any mm's data: the
//!   data state is recorded as holding the kernel's data of an unknown mm, which no class may
//!   see.
//! - The kernel in the nonsensitive space taints nothing: that space holds no user data, and the
//!   kernel's own branch training is trusted.
//!
//! Who clears what: each [`Action`] clears one structure entirely, whoever left state in it.
//! [`Action::Ibpb`] clears the predictors, [`Action::RsbFill`] the return stack buffer,
//! [`Action::L1dFlush`] the L1 data cache and [`Action::Verw`] the CPU buffers. Nothing else
//! clears a taint.
//!
//! # Classes
//!
//! A [`Class`] is a kind of untrusted code: [`Class::User`] now, [`Class::Guest`] for the KVM
//! work. Each declares a [`ClassPolicy`]: what it taints while it runs, which of that must be
//! cleared before the CPU enters the sensitive space, which structures must hold nothing it may
//! not see before it runs, and which sources it accepts state from when that state was left for
//! its own mm. User code accepts its own training and the kernel's data of its own mm. A guest
//! accepts its own training and that of its VMM's user code, but no data of the kernel at all,
//! not even its VMM's, which it must not see.
//!
//! # Steps
//!
//! [`CpuState::step`] applies one [`Event`] and returns the [`Actions`] the kernel must run
//! before the point the event reaches:
//!
//! - [`Event::Enter`] (to the nonsensitive space) needs nothing.
//! - [`Event::Exit`] (to the sensitive space) clears each control structure that holds training
//!   by a class listing it in [`ClassPolicy::before_sensitive`].
//! - [`Event::SwitchMm`] needs nothing; it changes which mm the next data and training are for.
//! - [`Event::Run`] returns to the class's code through the nonsensitive space and clears each
//!   structure of [`ClassPolicy::before_run`] that holds state the class does not accept.
//! - [`Event::Interrupt`] needs what an exit needs when it arrives in the nonsensitive space, and
//!   leaves the CPU in the space it found it in.
//!
//! # Invariants
//!
//! 1. While the CPU is in the sensitive space, no control structure holds training by user code
//!    or a guest. The only ways into the sensitive space are an exit and an interrupt, which clear
//!    every control structure holding such training (both classes list everything they train in
//!    [`ClassPolicy::before_sensitive`]), and no untrusted code runs in the sensitive space:
//!    [`Event::Run`] leaves it first.
//! 2. When user code of mm X runs, no control structure holds training by user code of another
//!    mm or by any guest, and no data structure holds data the kernel touched in the sensitive
//!    space for an mm other than X or an unknown one. [`Event::Run`] clears each structure that
//!    holds such state, just before the code runs, and nothing happens in between.
//! 3. When a guest of mm X runs, no control structure holds training by user code or a guest of
//!    another mm, and no data structure holds data the kernel touched in the sensitive space at
//!    all. Same argument as 2.
//!
//! No action runs that these invariants do not require: a structure is cleared only when it holds
//! state that the invariant of the code about to run forbids. [`Owners`] keeps exactly the
//! information that question needs: it says `Mixed` only when the state comes from two mms or an
//! unknown one, and then some of it is foreign to any single mm. The host tests check the three
//! invariants and this minimality on every sequence of up to five events.
//!
//! # Not modeled
//!
//! - Data that user code or a guest leaves in the data structures itself. It is not the kernel's
//!   sensitive data; the existing mitigations (VERW on return to user, KVM's L1D flush) deal
//!   with it.
//! - Interrupts that stay in the nonsensitive space: they change no taint.
//! - An interrupt or NMI landing inside a transition. The kernel side must make each step and its
//!   actions look atomic to such a handler: record a taint before the code that leaves it runs,
//!   and forget one only after the action that clears it has run.
//! - Several guests in one mm: a guest is identified by its VMM's mm.
//!
//! This file only uses `core`: it is built into the kernel and, unchanged, into the host test
//! crate, where `cargo test` runs the tests at the bottom.

/// Identity of an mm, such as `mm->context.ctx_id`, which no other mm ever gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MmId(pub(crate) u64);

/// A CPU structure whose content outlives the code that filled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taint {
    /// Indirect branch predictors and branch history (control state).
    Predictors,
    /// Return stack buffer (control state).
    Rsb,
    /// L1 data cache (data state).
    L1d,
    /// Fill, store and load-port buffers (data state).
    CpuBuffers,
}

impl Taint {
    /// Every structure, in the order [`Taints::iter`] yields them.
    pub(crate) const ALL: [Taint; 4] =
        [Taint::Predictors, Taint::Rsb, Taint::L1d, Taint::CpuBuffers];

    /// The bit of this structure in a [`Taints`].
    const fn bit(self) -> u8 {
        match self {
            Taint::Predictors => 1 << 0,
            Taint::Rsb => 1 << 1,
            Taint::L1d => 1 << 2,
            Taint::CpuBuffers => 1 << 3,
        }
    }

    /// The action that clears this structure.
    #[cfg_attr(not(test), expect(dead_code, reason = "the host tests use it"))]
    pub(crate) const fn action(self) -> Action {
        match self {
            Taint::Predictors => Action::Ibpb,
            Taint::Rsb => Action::RsbFill,
            Taint::L1d => Action::L1dFlush,
            Taint::CpuBuffers => Action::Verw,
        }
    }
}

/// Defines `$set`, a set of `$elem`s kept as the bit mask of their `bit()`s, with the
/// operations the sets of this file share.
macro_rules! bit_set {
    ($(#[$attr:meta])* $set:ident of $elem:ident) => {
        $(#[$attr])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) struct $set(u8);

        impl $set {
            /// The empty set.
            pub(crate) const NONE: Self = Self(0);

            /// The set holding only `elem`.
            pub(crate) const fn of(elem: $elem) -> Self {
                Self(elem.bit())
            }

            /// The elements in `self` or in `other`.
            pub(crate) const fn union(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }

            /// Whether `elem` is in the set.
            pub(crate) const fn contains(self, elem: $elem) -> bool {
                self.0 & elem.bit() != 0
            }

            /// The elements of the set, in the order of `ALL`.
            pub(crate) fn iter(self) -> impl Iterator<Item = $elem> {
                $elem::ALL.into_iter().filter(move |e| self.contains(*e))
            }
        }
    };
}

bit_set!(
    /// A set of [`Taint`]s.
    Taints of Taint
);

impl Taints {
    /// The branch predictors.
    pub(crate) const PREDICTORS: Self = Self::of(Taint::Predictors);
    /// The return stack buffer.
    pub(crate) const RSB: Self = Self::of(Taint::Rsb);
    /// The L1 data cache.
    pub(crate) const L1D: Self = Self::of(Taint::L1d);
    /// The CPU buffers.
    pub(crate) const CPU_BUFFERS: Self = Self::of(Taint::CpuBuffers);
    /// All control state.
    pub(crate) const CONTROL: Self = Self::PREDICTORS.union(Self::RSB);
    /// All data state.
    pub(crate) const DATA: Self = Self::L1D.union(Self::CPU_BUFFERS);
    /// Every structure.
    pub(crate) const ALL: Self = Self::CONTROL.union(Self::DATA);
}

/// A mitigation, which clears one structure entirely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Indirect branch prediction barrier: clears the branch predictors.
    Ibpb,
    /// Overwrites the return stack buffer with harmless entries.
    RsbFill,
    /// Flushes the L1 data cache (`MSR_IA32_FLUSH_CMD`).
    L1dFlush,
    /// `VERW` with the microcode's buffer-clearing behaviour: clears the CPU buffers.
    Verw,
}

impl Action {
    /// Every action, in the order the kernel runs them: control state first, `VERW` last, as late
    /// as possible on the way out.
    pub(crate) const ALL: [Action; 4] = [
        Action::Ibpb,
        Action::RsbFill,
        Action::L1dFlush,
        Action::Verw,
    ];

    /// The bit of this action in an [`Actions`]: the bit of the structure it clears.
    const fn bit(self) -> u8 {
        self.clears().bit()
    }

    /// The structure this action clears.
    pub(crate) const fn clears(self) -> Taint {
        match self {
            Action::Ibpb => Taint::Predictors,
            Action::RsbFill => Taint::Rsb,
            Action::L1dFlush => Taint::L1d,
            Action::Verw => Taint::CpuBuffers,
        }
    }
}

bit_set!(
    /// A set of [`Action`]s, which the kernel runs in the order of [`Action::ALL`].
    Actions of Action
);

impl Actions {
    /// Whether the set is empty.
    pub(crate) const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions that clear the structures of `taints`. Each action has the bit of the
    /// structure it clears.
    pub(crate) const fn clearing(taints: Taints) -> Self {
        Self(taints.0)
    }

    /// The set without `action`.
    #[cfg_attr(not(test), expect(dead_code, reason = "the host tests use it"))]
    pub(crate) const fn without(self, action: Action) -> Self {
        Self(self.0 & !action.bit())
    }

    /// Number of actions in the set.
    #[cfg_attr(not(test), expect(dead_code, reason = "the host tests use it"))]
    pub(crate) const fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// The structures the actions of the set clear.
    #[cfg_attr(not(test), expect(dead_code, reason = "the host tests use it"))]
    pub(crate) const fn clears(self) -> Taints {
        Taints(self.0)
    }
}

/// Who can leave state in a structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The kernel, working in the sensitive space on behalf of an mm.
    Kernel,
    /// User code of an mm.
    User,
    /// A guest whose VMM runs in an mm.
    Guest,
}

impl Source {
    /// Every source.
    pub(crate) const ALL: [Source; 3] = [Source::Kernel, Source::User, Source::Guest];

    /// The bit of this source in a [`Sources`].
    const fn bit(self) -> u8 {
        match self {
            Source::Kernel => 1 << 0,
            Source::User => 1 << 1,
            Source::Guest => 1 << 2,
        }
    }
}

/// A set of [`Source`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sources(u8);

impl Sources {
    /// The kernel in the sensitive space.
    pub(crate) const KERNEL: Self = Self(Source::Kernel.bit());
    /// User code.
    pub(crate) const USER: Self = Self(Source::User.bit());
    /// Guests.
    pub(crate) const GUEST: Self = Self(Source::Guest.bit());

    /// The sources in `self` or in `other`.
    pub(crate) const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether `source` is in the set.
    pub(crate) const fn contains(self, source: Source) -> bool {
        self.0 & source.bit() != 0
    }
}

/// For which mms one source left state in one structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owners {
    /// No state left since the structure was last cleared.
    Nobody,
    /// State left for this mm only.
    Only(MmId),
    /// State left for two or more mms, or for an mm that is not known.
    Mixed,
}

impl Owners {
    /// The owners once state has also been left for `mm`.
    pub(crate) fn with(self, mm: MmId) -> Self {
        match self {
            Owners::Nobody => Owners::Only(mm),
            Owners::Only(old) if old == mm => self,
            Owners::Only(_) | Owners::Mixed => Owners::Mixed,
        }
    }

    /// Whether no state was left for an mm other than `mm`.
    pub(crate) fn at_most(self, mm: MmId) -> bool {
        match self {
            Owners::Nobody => true,
            Owners::Only(old) => old == mm,
            Owners::Mixed => false,
        }
    }
}

/// Who left state in one structure: the owners per source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origins {
    /// Data the kernel touched in the sensitive space, per mm.
    pub(crate) kernel: Owners,
    /// State left by user code, per mm.
    pub(crate) user: Owners,
    /// State left by guests, per VMM mm.
    pub(crate) guest: Owners,
}

impl Origins {
    /// A structure nobody left state in, as after the action that clears it.
    pub(crate) const CLEAR: Self = Self {
        kernel: Owners::Nobody,
        user: Owners::Nobody,
        guest: Owners::Nobody,
    };

    /// The owners of what `source` left.
    pub(crate) fn of(self, source: Source) -> Owners {
        match source {
            Source::Kernel => self.kernel,
            Source::User => self.user,
            Source::Guest => self.guest,
        }
    }

    /// Records that `source` left state for `mm`, or for an unknown mm if `mm` is `None`.
    fn record(&mut self, source: Source, mm: Option<MmId>) {
        let owners = match source {
            Source::Kernel => &mut self.kernel,
            Source::User => &mut self.user,
            Source::Guest => &mut self.guest,
        };
        *owners = match mm {
            Some(mm) => owners.with(mm),
            None => Owners::Mixed,
        };
    }

    /// Whether nobody left state.
    #[cfg_attr(not(test), expect(dead_code, reason = "the host tests use it"))]
    pub(crate) fn is_clear(self) -> bool {
        self == Self::CLEAR
    }

    /// Whether code of `mm` that accepts, from its own mm, the state of the sources in `trusted`
    /// may run with this structure as it is.
    pub(crate) fn allows(self, trusted: Sources, mm: MmId) -> bool {
        Source::ALL.into_iter().all(|source| match self.of(source) {
            Owners::Nobody => true,
            owners => trusted.contains(source) && owners.at_most(mm),
        })
    }
}

/// A kind of code the kernel does not trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// User code of the current mm.
    User,
    /// A guest of the current mm, which is its VMM's (for the KVM work).
    Guest,
}

impl Class {
    /// Every class.
    pub(crate) const ALL: [Class; 2] = [Class::User, Class::Guest];

    /// The source under which the taints of the class's code are recorded.
    pub(crate) const fn source(self) -> Source {
        match self {
            Class::User => Source::User,
            Class::Guest => Source::Guest,
        }
    }
}

/// What a class declares about the state its code leaves and the state it may run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClassPolicy {
    /// The structures the class's code leaves its state in while it runs.
    pub(crate) taints: Taints,
    /// The structures to clear, when they hold state the class left, before the CPU enters the
    /// sensitive space.
    pub(crate) before_sensitive: Taints,
    /// The structures to clear, when they hold state the class does not accept, before the
    /// class's code runs.
    pub(crate) before_run: Taints,
    /// The sources whose state the class accepts when it was left for its own mm. State left for
    /// another mm, or for an unknown one, it never accepts.
    pub(crate) trusts: Sources,
}

impl ClassPolicy {
    /// User code trains the control state, must not leave it to the sensitive space and runs
    /// with its own training and with the data the kernel touched for its own mm.
    pub(crate) const USER: Self = Self {
        taints: Taints::CONTROL,
        before_sensitive: Taints::CONTROL,
        before_run: Taints::ALL,
        trusts: Sources::KERNEL.union(Sources::USER),
    };

    /// A guest trains the control state, must not leave it to the sensitive space and runs with
    /// its own training and its VMM's, but with no data the kernel touched in the sensitive
    /// space.
    pub(crate) const GUEST: Self = Self {
        taints: Taints::CONTROL,
        before_sensitive: Taints::CONTROL,
        before_run: Taints::ALL,
        trusts: Sources::USER.union(Sources::GUEST),
    };
}

/// The structures the kernel leaves the data of the current mm in while it is in the sensitive
/// space.
pub(crate) const SENSITIVE_KERNEL_TAINTS: Taints = Taints::DATA;

/// The policies of all classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policies {
    /// The policy of [`Class::User`].
    pub(crate) user: ClassPolicy,
    /// The policy of [`Class::Guest`].
    pub(crate) guest: ClassPolicy,
}

impl Policies {
    /// The policies this file declares.
    pub(crate) const DEFAULT: Self = Self {
        user: ClassPolicy::USER,
        guest: ClassPolicy::GUEST,
    };

    /// The policy of `class`.
    pub(crate) const fn of(&self, class: Class) -> ClassPolicy {
        match class {
            Class::User => self.user,
            Class::Guest => self.guest,
        }
    }
}

/// The kernel address space a CPU is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Space {
    /// The nonsensitive space, without user data.
    Nonsensitive,
    /// The full space.
    Sensitive,
}

/// What happens on a CPU, as the taint model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The kernel enters the nonsensitive space.
    #[cfg_attr(not(test), expect(dead_code, reason = "the host tests use it"))]
    Enter,
    /// The kernel exits to the sensitive space, for instance on a page fault on user data of the
    /// current mm, and may touch that data.
    Exit,
    /// The kernel switches to this mm, in the space it is in.
    SwitchMm(MmId),
    /// Code of this class and of the current mm runs, entered from and returning to the
    /// nonsensitive space.
    Run(Class),
    /// An interrupt or NMI arrives in the kernel. Its handler uses the sensitive space, may touch
    /// any mm's data, and returns to the space it found.
    Interrupt,
}

/// The taint state of one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CpuState {
    /// The address space the CPU is in.
    space: Space,
    /// The current mm.
    mm: MmId,
    /// Who left state in the branch predictors.
    predictors: Origins,
    /// Who left state in the return stack buffer.
    rsb: Origins,
    /// Who left state in the L1 data cache.
    l1d: Origins,
    /// Who left state in the CPU buffers.
    cpu_buffers: Origins,
    /// The policies of the classes.
    policies: Policies,
}

impl CpuState {
    /// A CPU as it boots: in the sensitive space with `mm` current, no untrusted code run and no
    /// user data touched yet, with the policies of [`Policies::DEFAULT`].
    pub(crate) const fn new(mm: MmId) -> Self {
        Self::with_policies(mm, Policies::DEFAULT)
    }

    /// Like [`CpuState::new`], with other policies.
    pub(crate) const fn with_policies(mm: MmId, policies: Policies) -> Self {
        Self {
            space: Space::Sensitive,
            mm,
            predictors: Origins::CLEAR,
            rsb: Origins::CLEAR,
            l1d: Origins::CLEAR,
            cpu_buffers: Origins::CLEAR,
            policies,
        }
    }

    /// The address space the CPU is in.
    #[cfg_attr(not(test), expect(dead_code, reason = "the host tests use it"))]
    pub(crate) const fn space(&self) -> Space {
        self.space
    }

    /// The current mm. Only the tests compare it.
    #[cfg(any(test, CONFIG_ASI_KUNIT_TEST))]
    pub(crate) const fn mm(&self) -> MmId {
        self.mm
    }

    /// Who left state in `taint`'s structure.
    pub(crate) const fn origins(&self, taint: Taint) -> Origins {
        match taint {
            Taint::Predictors => self.predictors,
            Taint::Rsb => self.rsb,
            Taint::L1d => self.l1d,
            Taint::CpuBuffers => self.cpu_buffers,
        }
    }

    /// The structures someone left state in.
    #[cfg_attr(not(test), expect(dead_code, reason = "the host tests use it"))]
    pub(crate) fn taints(&self) -> Taints {
        Taint::ALL
            .into_iter()
            .filter(|t| self.origins(*t) != Origins::CLEAR)
            .fold(Taints::NONE, |set, t| set.union(Taints::of(t)))
    }

    /// Applies `event` and returns the actions the kernel must run for it, before the point the
    /// event reaches (the sensitive space, or the class's code).
    pub(crate) fn step(&mut self, event: Event) -> Actions {
        match event {
            Event::Enter => {
                self.space = Space::Nonsensitive;
                Actions::NONE
            }
            Event::Exit => {
                let actions = self.enter_sensitive();
                self.record(SENSITIVE_KERNEL_TAINTS, Source::Kernel, Some(self.mm));
                actions
            }
            Event::SwitchMm(mm) => {
                self.mm = mm;
                if self.space == Space::Sensitive {
                    self.record(SENSITIVE_KERNEL_TAINTS, Source::Kernel, Some(mm));
                }
                Actions::NONE
            }
            Event::Run(class) => self.run(class),
            Event::Interrupt => {
                let interrupted = self.space;
                let actions = self.enter_sensitive();
                self.record(SENSITIVE_KERNEL_TAINTS, Source::Kernel, None);
                self.space = interrupted;
                actions
            }
        }
    }

    /// Who left state in `taint`'s structure, for update.
    fn origins_mut(&mut self, taint: Taint) -> &mut Origins {
        match taint {
            Taint::Predictors => &mut self.predictors,
            Taint::Rsb => &mut self.rsb,
            Taint::L1d => &mut self.l1d,
            Taint::CpuBuffers => &mut self.cpu_buffers,
        }
    }

    /// Records that `source` left state for `mm` (`None`: unknown) in the structures of `taints`.
    fn record(&mut self, taints: Taints, source: Source, mm: Option<MmId>) {
        for taint in taints.iter() {
            self.origins_mut(taint).record(source, mm);
        }
    }

    /// Returns the actions that clear the structures of `taints` and forgets their state.
    fn clear(&mut self, taints: Taints) -> Actions {
        for taint in taints.iter() {
            *self.origins_mut(taint) = Origins::CLEAR;
        }
        Actions::clearing(taints)
    }

    /// Moves to the sensitive space and returns the actions needed first.
    fn enter_sensitive(&mut self) -> Actions {
        let mut stale = Taints::NONE;
        for class in Class::ALL {
            let policy = self.policies.of(class);
            for taint in policy.before_sensitive.iter() {
                if self.origins(taint).of(class.source()) != Owners::Nobody {
                    stale = stale.union(Taints::of(taint));
                }
            }
        }
        let actions = self.clear(stale);
        self.space = Space::Sensitive;
        actions
    }

    /// Runs code of `class` from the nonsensitive space and returns the actions needed first.
    fn run(&mut self, class: Class) -> Actions {
        let policy = self.policies.of(class);
        self.space = Space::Nonsensitive;
        let stale = policy
            .before_run
            .iter()
            .filter(|t| !self.origins(*t).allows(policy.trusts, self.mm))
            .fold(Taints::NONE, |set, t| set.union(Taints::of(t)));
        let actions = self.clear(stale);
        self.record(policy.taints, class.source(), Some(self.mm));
        actions
    }
}

/// What happened on a CPU since the last return to user mode that the kernel could not tell the
/// model at once: noted in `noinstr` code and NMIs, given to [`CpuState::return_to_user`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The CPU left the nonsensitive space ([`Event::Exit`]).
    pub(crate) exit: bool,
    /// Code that may touch any mm's data ran in the sensitive space: an interrupt, an NMI, a
    /// kernel thread, reclaim ([`Event::Interrupt`]).
    pub(crate) foreign: bool,
}

/// The actions of one return to user mode, see [`CpuState::return_to_user`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Return {
    /// What the model required for the exit that happened, which the kernel ran then.
    pub(crate) at_exit: Actions,
    /// What it required for the foreign code that ran, which the kernel ran before that code
    /// (as an exit) or finds already done.
    pub(crate) at_foreign: Actions,
    /// What the kernel must run now, before user code.
    pub(crate) at_run: Actions,
    /// What the next exit must run, until the next return to user mode.
    pub(crate) next_exit: Actions,
}

impl Return {
    /// Every action required by the return.
    #[cfg_attr(not(test), expect(dead_code, reason = "the host tests use it"))]
    pub(crate) fn required(&self) -> [Actions; 3] {
        [self.at_exit, self.at_foreign, self.at_run]
    }
}

impl CpuState {
    /// The kernel's way of driving the model: on a return to user mode of `mm`, catch up on
    /// `pending`, then run user code.
    ///
    /// The kernel runs user code only through the nonsensitive space and leaves it only by an
    /// exit, so between two returns to user mode there is at most one exit that matters (others
    /// are NMIs that went back, which `foreign` covers). Stepping [`Event::Exit`], then
    /// [`Event::Interrupt`], then [`Event::SwitchMm`] and [`Event::Run`] at the return gives
    /// the actions the eager steps would have given at each point: the host tests check it. The
    /// exit's actions come from [`Return::next_exit`] of the previous return, which the kernel
    /// arms for its exit path.
    pub(crate) fn return_to_user(&mut self, pending: Pending, mm: MmId) -> Return {
        let at_exit = if pending.exit {
            self.step(Event::Exit)
        } else {
            Actions::NONE
        };
        let at_foreign = if pending.foreign {
            self.step(Event::Interrupt)
        } else {
            Actions::NONE
        };
        if mm != self.mm {
            self.step(Event::SwitchMm(mm));
        }
        let at_run = self.step(Event::Run(Class::User));
        let mut next = *self;
        let next_exit = next.step(Event::Exit);
        Return {
            at_exit,
            at_foreign,
            at_run,
            next_exit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const A: MmId = MmId(1);
    const B: MmId = MmId(2);

    /// The events of the exhaustive test.
    const ALPHABET: [Event; 7] = [
        Event::Enter,
        Event::Exit,
        Event::SwitchMm(A),
        Event::SwitchMm(B),
        Event::Run(Class::User),
        Event::Run(Class::Guest),
        Event::Interrupt,
    ];

    // The reference model records, per structure, the exact set of parties that left state in
    // it, one bit each. It is written from the invariants alone and does not use the policies.
    const USER_A: u8 = 1 << 0;
    const USER_B: u8 = 1 << 1;
    const GUEST_A: u8 = 1 << 2;
    const GUEST_B: u8 = 1 << 3;
    const KERNEL_A: u8 = 1 << 4;
    const KERNEL_B: u8 = 1 << 5;
    /// Data an interrupt handler touched, of an mm other than A and B.
    const KERNEL_OTHER: u8 = 1 << 6;
    const USERS: u8 = USER_A | USER_B;
    const GUESTS: u8 = GUEST_A | GUEST_B;
    const KERNEL: u8 = KERNEL_A | KERNEL_B | KERNEL_OTHER;

    fn party(source: Source, mm: MmId) -> u8 {
        match (source, mm) {
            (Source::User, A) => USER_A,
            (Source::User, B) => USER_B,
            (Source::Guest, A) => GUEST_A,
            (Source::Guest, B) => GUEST_B,
            (Source::Kernel, A) => KERNEL_A,
            (Source::Kernel, B) => KERNEL_B,
            _ => panic!("the tests use mms A and B only"),
        }
    }

    fn slot(taint: Taint) -> usize {
        match taint {
            Taint::Predictors => 0,
            Taint::Rsb => 1,
            Taint::L1d => 2,
            Taint::CpuBuffers => 3,
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Invariant {
        /// 1: the sensitive space runs with attacker-trained control state.
        SensitiveSeesTraining,
        /// 2: user code runs with another mm's training or a guest's, or another mm's data.
        UserSeesForeign,
        /// 3: a guest runs with another mm's training, or with kernel data.
        GuestSeesForeign,
    }

    #[derive(Clone, Copy, Debug)]
    struct Reference {
        space: Space,
        mm: MmId,
        held: [u8; 4],
    }

    impl Reference {
        fn new(mm: MmId) -> Self {
            Self {
                space: Space::Sensitive,
                mm,
                held: [0; 4],
            }
        }

        /// Fails with `invariant` if a structure of `taints` holds a party of `forbidden`.
        fn check(
            &self,
            taints: Taints,
            forbidden: u8,
            invariant: Invariant,
        ) -> Result<(), Invariant> {
            if taints.iter().any(|t| self.held[slot(t)] & forbidden != 0) {
                Err(invariant)
            } else {
                Ok(())
            }
        }

        fn check_sensitive(&self) -> Result<(), Invariant> {
            self.check(
                Taints::CONTROL,
                USERS | GUESTS,
                Invariant::SensitiveSeesTraining,
            )
        }

        fn add(&mut self, taints: Taints, parties: u8) {
            for t in taints.iter() {
                self.held[slot(t)] |= parties;
            }
        }

        /// Runs `actions`, then `event`, checking the invariants at the point the event reaches
        /// and at its end.
        fn step(&mut self, event: Event, actions: Actions) -> Result<(), Invariant> {
            for t in actions.clears().iter() {
                self.held[slot(t)] = 0;
            }
            let mm = self.mm;
            match event {
                Event::Enter => self.space = Space::Nonsensitive,
                Event::Exit => {
                    self.check_sensitive()?;
                    self.space = Space::Sensitive;
                    self.add(Taints::DATA, party(Source::Kernel, mm));
                }
                Event::SwitchMm(to) => {
                    self.mm = to;
                    if self.space == Space::Sensitive {
                        self.add(Taints::DATA, party(Source::Kernel, to));
                    }
                }
                Event::Run(Class::User) => {
                    self.space = Space::Nonsensitive;
                    let own = party(Source::User, mm);
                    let invariant = Invariant::UserSeesForeign;
                    self.check(Taints::CONTROL, (USERS & !own) | GUESTS, invariant)?;
                    self.check(Taints::DATA, KERNEL & !party(Source::Kernel, mm), invariant)?;
                    self.add(Taints::CONTROL, own);
                }
                Event::Run(Class::Guest) => {
                    self.space = Space::Nonsensitive;
                    let own = party(Source::Guest, mm);
                    let others = (USERS & !party(Source::User, mm)) | (GUESTS & !own);
                    let invariant = Invariant::GuestSeesForeign;
                    self.check(Taints::CONTROL, others, invariant)?;
                    self.check(Taints::DATA, KERNEL, invariant)?;
                    self.add(Taints::CONTROL, own);
                }
                Event::Interrupt => {
                    self.check_sensitive()?;
                    self.add(Taints::DATA, KERNEL_OTHER);
                }
            }
            match self.space {
                Space::Sensitive => self.check_sensitive(),
                Space::Nonsensitive => Ok(()),
            }
        }

        /// What [`CpuState`] should record for `source` in `taint`'s structure.
        fn owners(&self, taint: Taint, source: Source) -> Owners {
            let held = self.held[slot(taint)];
            let other = source == Source::Kernel && held & KERNEL_OTHER != 0;
            let a = held & party(source, A) != 0;
            let b = held & party(source, B) != 0;
            match (a, b, other) {
                (false, false, false) => Owners::Nobody,
                (true, false, false) => Owners::Only(A),
                (false, true, false) => Owners::Only(B),
                _ => Owners::Mixed,
            }
        }

        /// Whether `cpu` keeps the same books.
        fn agrees(&self, cpu: &CpuState) -> bool {
            self.space == cpu.space()
                && self.mm == cpu.mm()
                && Taint::ALL.into_iter().all(|t| {
                    Source::ALL
                        .into_iter()
                        .all(|s| cpu.origins(t).of(s) == self.owners(t, s))
                })
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Problem {
        /// The actions returned leave an invariant broken.
        Violated(Invariant),
        /// Without this action, which the step returned, no invariant breaks in the step.
        Unneeded(Action),
        /// The recorded taints differ from the reference model's.
        Books,
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Failure {
        events: Vec<Event>,
        problem: Problem,
    }

    /// Runs one step on both models. An action is needed if leaving it out, and only it, breaks
    /// an invariant within the same step; every action returned must be needed. (Needed in the
    /// same step is stronger than needed at that step or later in the sequence.)
    fn check_step(
        cpu: &mut CpuState,
        reference: &mut Reference,
        event: Event,
    ) -> Result<(), Problem> {
        let before = *reference;
        let actions = cpu.step(event);
        reference.step(event, actions).map_err(Problem::Violated)?;
        for action in actions.iter() {
            let mut without = before;
            if without.step(event, actions.without(action)).is_ok() {
                return Err(Problem::Unneeded(action));
            }
        }
        if reference.agrees(cpu) {
            Ok(())
        } else {
            Err(Problem::Books)
        }
    }

    fn run_sequence(policies: Policies, events: &[Event]) -> Result<(), Problem> {
        let mut cpu = CpuState::with_policies(A, policies);
        let mut reference = Reference::new(A);
        events
            .iter()
            .try_for_each(|e| check_step(&mut cpu, &mut reference, *e))
    }

    /// Checks every extension of `events` up to `max_len` events; counts the sequences checked.
    fn explore(
        cpu: CpuState,
        reference: Reference,
        events: &mut Vec<Event>,
        max_len: usize,
        count: &mut u64,
    ) -> Result<(), Failure> {
        *count += 1;
        if events.len() == max_len {
            return Ok(());
        }
        for event in ALPHABET {
            let (mut cpu, mut reference) = (cpu, reference);
            events.push(event);
            if let Err(problem) = check_step(&mut cpu, &mut reference, event) {
                let events = events.clone();
                return Err(Failure { events, problem });
            }
            explore(cpu, reference, events, max_len, count)?;
            events.pop();
        }
        Ok(())
    }

    /// Checks every sequence of up to `max_len` events and returns how many there are.
    fn check_all(policies: Policies, max_len: usize) -> Result<u64, Failure> {
        let mut count = 0;
        let cpu = CpuState::with_policies(A, policies);
        explore(cpu, Reference::new(A), &mut Vec::new(), max_len, &mut count)?;
        Ok(count)
    }

    fn actions(list: &[Action]) -> Actions {
        list.iter()
            .fold(Actions::NONE, |set, a| set.union(Actions::of(*a)))
    }

    const CONTROL_FLUSH: [Action; 2] = [Action::Ibpb, Action::RsbFill];
    const DATA_FLUSH: [Action; 2] = [Action::L1dFlush, Action::Verw];

    /// Steps a CPU starting like [`CpuState::new`] through `events` and returns each step's
    /// actions.
    fn steps(events: &[Event]) -> Vec<Actions> {
        let mut cpu = CpuState::new(A);
        events.iter().map(|e| cpu.step(*e)).collect()
    }

    #[test]
    fn every_sequence_up_to_five_events() {
        // 7 events: 1 + 7 + 7^2 + 7^3 + 7^4 + 7^5 sequences.
        assert_eq!(check_all(Policies::DEFAULT, 5), Ok(19608));
    }

    #[test]
    fn checker_catches_missing_ibpb() {
        let user = ClassPolicy {
            before_sensitive: Taints::RSB,
            ..ClassPolicy::USER
        };
        let weak = Policies {
            user,
            ..Policies::DEFAULT
        };
        let failure = check_all(weak, 5).unwrap_err();
        assert_eq!(
            failure.problem,
            Problem::Violated(Invariant::SensitiveSeesTraining)
        );
        let exit = [Event::Run(Class::User), Event::Exit];
        assert_eq!(
            run_sequence(weak, &exit),
            Err(Problem::Violated(Invariant::SensitiveSeesTraining))
        );
        let interrupt = [Event::Run(Class::User), Event::Interrupt];
        assert_eq!(
            run_sequence(weak, &interrupt),
            Err(Problem::Violated(Invariant::SensitiveSeesTraining))
        );
    }

    #[test]
    fn checker_catches_missing_verw() {
        let user = ClassPolicy {
            before_run: Taints::CONTROL.union(Taints::L1D),
            ..ClassPolicy::USER
        };
        let weak = Policies {
            user,
            ..Policies::DEFAULT
        };
        let failure = check_all(weak, 5).unwrap_err();
        assert_eq!(
            failure.problem,
            Problem::Violated(Invariant::UserSeesForeign)
        );
        let seq = [
            Event::Exit,
            Event::Enter,
            Event::SwitchMm(B),
            Event::Run(Class::User),
        ];
        assert_eq!(
            run_sequence(weak, &seq),
            Err(Problem::Violated(Invariant::UserSeesForeign))
        );
    }

    #[test]
    fn checker_catches_guest_seeing_own_mm_data() {
        let guest = ClassPolicy {
            trusts: Sources::KERNEL.union(Sources::USER).union(Sources::GUEST),
            ..ClassPolicy::GUEST
        };
        let weak = Policies {
            guest,
            ..Policies::DEFAULT
        };
        let seq = [Event::Exit, Event::Run(Class::Guest)];
        assert_eq!(
            run_sequence(weak, &seq),
            Err(Problem::Violated(Invariant::GuestSeesForeign))
        );
        assert!(check_all(weak, 5).is_err());
    }

    #[test]
    fn checker_catches_unneeded_flush() {
        // A guest that does not trust its VMM's training asks for flushes nothing requires.
        let guest = ClassPolicy {
            trusts: Sources::GUEST,
            ..ClassPolicy::GUEST
        };
        let eager = Policies {
            guest,
            ..Policies::DEFAULT
        };
        let failure = check_all(eager, 5).unwrap_err();
        assert_eq!(failure.problem, Problem::Unneeded(Action::Ibpb));
        let seq = [Event::Run(Class::User), Event::Run(Class::Guest)];
        assert_eq!(
            run_sequence(eager, &seq),
            Err(Problem::Unneeded(Action::Ibpb))
        );
        // Flushing data before every user run is caught as well.
        let user = ClassPolicy {
            trusts: Sources::USER,
            ..ClassPolicy::USER
        };
        let eager = Policies {
            user,
            ..Policies::DEFAULT
        };
        let seq = [Event::Exit, Event::Run(Class::User)];
        assert_eq!(
            run_sequence(eager, &seq),
            Err(Problem::Unneeded(Action::L1dFlush))
        );
    }

    #[test]
    fn user_ping_pong_without_sensitive_access() {
        let run = Event::Run(Class::User);
        let got = steps(&[
            Event::Enter,
            run,
            run,
            Event::SwitchMm(B),
            run,
            run,
            Event::SwitchMm(A),
            run,
            Event::SwitchMm(A),
            run,
        ]);
        let flush = actions(&CONTROL_FLUSH);
        let none = Actions::NONE;
        // Control flushes only when user code of the other mm ran last; never a data flush.
        assert_eq!(
            got,
            [none, none, none, none, flush, none, none, flush, none, none]
        );
    }

    #[test]
    fn user_ping_pong_with_sensitive_access() {
        let run = Event::Run(Class::User);
        let none = Actions::NONE;
        let control = actions(&CONTROL_FLUSH);
        let data = actions(&DATA_FLUSH);
        let expected = [
            (Event::Enter, none),
            (run, none),
            // The exit after A's user code clears A's training.
            (Event::Exit, control),
            (Event::Enter, none),
            (Event::SwitchMm(B), none),
            // B must not see the data the kernel touched for A; A's training is gone already.
            (run, data),
            (run, none),
            (Event::SwitchMm(A), none),
            // A must not see B's training; the kernel touched nothing since the last flush.
            (run, control),
            (run, none),
            (Event::Exit, control),
            // A switch in the sensitive space counts as B's data too.
            (Event::SwitchMm(B), none),
            (Event::Enter, none),
            // A's data was touched as well; the exit cleared the training.
            (run, data),
            (Event::Exit, control),
            (Event::Enter, none),
            // B's own data stays for B.
            (run, none),
            (Event::SwitchMm(A), none),
            // A must see neither B's training nor B's data.
            (run, control.union(data)),
        ];
        let events: Vec<Event> = expected.iter().map(|(e, _)| *e).collect();
        let wanted: Vec<Actions> = expected.iter().map(|(_, a)| *a).collect();
        assert_eq!(steps(&events), wanted);
        assert_eq!(run_sequence(Policies::DEFAULT, &events), Ok(()));
    }

    #[test]
    fn process_without_sensitive_access_never_flushes_data() {
        let mut cpu = CpuState::new(A);
        cpu.step(Event::Enter);
        for event in [
            Event::Run(Class::User),
            Event::Enter,
            Event::SwitchMm(A),
            Event::Run(Class::User),
            Event::Run(Class::User),
        ] {
            assert_eq!(cpu.step(event), Actions::NONE);
        }
        assert_eq!(cpu.taints(), Taints::CONTROL);
        assert_eq!(cpu.origins(Taint::Predictors).user, Owners::Only(A));
        assert!(cpu.origins(Taint::L1d).is_clear());
    }

    #[test]
    fn exit_clears_training_once() {
        let mut cpu = CpuState::new(A);
        assert_eq!(cpu.step(Event::Run(Class::User)), Actions::NONE);
        assert_eq!(cpu.space(), Space::Nonsensitive);
        assert_eq!(cpu.step(Event::Exit), actions(&CONTROL_FLUSH));
        assert_eq!(cpu.space(), Space::Sensitive);
        assert_eq!(cpu.taints(), Taints::DATA);
        assert_eq!(cpu.step(Event::Enter), Actions::NONE);
        assert_eq!(cpu.step(Event::Exit), Actions::NONE);
        assert_eq!(cpu.step(Event::Exit), Actions::NONE);
    }

    #[test]
    fn interrupt_flushes_like_an_exit_and_returns() {
        let mut cpu = CpuState::new(A);
        cpu.step(Event::Run(Class::User));
        assert_eq!(cpu.step(Event::Interrupt), actions(&CONTROL_FLUSH));
        assert_eq!(cpu.space(), Space::Nonsensitive);
        assert_eq!(cpu.origins(Taint::CpuBuffers).kernel, Owners::Mixed);
        // The interrupt's data is of an unknown mm: even A's user code may not see it.
        assert_eq!(cpu.step(Event::Run(Class::User)), actions(&DATA_FLUSH));
        // In the sensitive space an interrupt needs nothing and stays there.
        cpu.step(Event::Exit);
        assert_eq!(cpu.step(Event::Interrupt), Actions::NONE);
        assert_eq!(cpu.space(), Space::Sensitive);
    }

    #[test]
    fn guest_policy() {
        let mut cpu = CpuState::new(A);
        // The guest trusts its VMM's training.
        assert_eq!(cpu.step(Event::Run(Class::User)), Actions::NONE);
        assert_eq!(cpu.step(Event::Run(Class::Guest)), Actions::NONE);
        assert_eq!(cpu.step(Event::Run(Class::Guest)), Actions::NONE);
        // The VMM does not trust the guest's.
        assert_eq!(cpu.step(Event::Run(Class::User)), actions(&CONTROL_FLUSH));
        // The guest sees no kernel data, not even its VMM's.
        cpu.step(Event::Exit);
        assert_eq!(cpu.step(Event::Run(Class::Guest)), actions(&DATA_FLUSH));
        // Another mm's guest sees neither this guest's training nor its VMM's.
        cpu.step(Event::Run(Class::User));
        cpu.step(Event::SwitchMm(B));
        assert_eq!(cpu.step(Event::Run(Class::Guest)), actions(&CONTROL_FLUSH));
        assert_eq!(cpu.origins(Taint::Rsb).guest, Owners::Only(B));
        assert_eq!(cpu.origins(Taint::Rsb).user, Owners::Nobody);
    }

    #[test]
    fn declared_policies() {
        for class in Class::ALL {
            let policy = Policies::DEFAULT.of(class);
            // Whatever a class trains is cleared before the sensitive space (invariant 1).
            assert_eq!(
                policy.taints.union(policy.before_sensitive),
                policy.before_sensitive
            );
            assert_eq!(policy.before_run, Taints::ALL);
            assert!(policy.trusts.contains(class.source()));
        }
        assert!(ClassPolicy::USER.trusts.contains(Source::Kernel));
        assert!(!ClassPolicy::USER.trusts.contains(Source::Guest));
        assert!(!ClassPolicy::GUEST.trusts.contains(Source::Kernel));
        assert!(ClassPolicy::GUEST.trusts.contains(Source::User));
        assert_eq!(SENSITIVE_KERNEL_TAINTS, Taints::DATA);
    }

    #[test]
    fn sets() {
        assert!(Taints::NONE != Taints::ALL);
        assert_eq!(Taints::ALL.iter().collect::<Vec<_>>(), Taint::ALL);
        assert_eq!(
            Taints::DATA.iter().collect::<Vec<_>>(),
            [Taint::L1d, Taint::CpuBuffers]
        );
        let all = Actions::clearing(Taints::ALL);
        assert_eq!(all.len(), 4);
        assert_eq!(all.iter().collect::<Vec<_>>(), Action::ALL);
        assert_eq!(all.clears(), Taints::ALL);
        for taint in Taint::ALL {
            assert_eq!(taint.action().clears(), taint);
            assert_eq!(
                Actions::clearing(Taints::of(taint)).clears(),
                Taints::of(taint)
            );
        }
        let some = all.without(Action::RsbFill);
        assert!(!some.contains(Action::RsbFill) && some.contains(Action::Verw));
        assert_eq!(some.len(), 3);
        assert!(Actions::NONE.is_empty() && Actions::of(Action::Verw).len() == 1);
        assert_eq!(Actions::clearing(Taints::NONE), Actions::NONE);
    }

    /// What the kernel sees between two returns to user mode: an exit or not, foreign code
    /// or not, the mm of the return.
    fn between() -> Vec<(Pending, MmId)> {
        let mut all = Vec::new();
        for mm in [A, B] {
            for exit in [false, true] {
                for foreign in [false, true] {
                    all.push((Pending { exit, foreign }, mm));
                }
            }
        }
        all
    }

    /// The eager events of what the kernel saw: the exit, the foreign code (after the exit, in
    /// the space the exit left), the switch to `mm` if it is another one, then the return.
    fn eager_events(cpu: &CpuState, pending: Pending, mm: MmId) -> Vec<Event> {
        let mut events = Vec::new();
        if pending.exit {
            events.push(Event::Exit);
        }
        if pending.foreign {
            events.push(Event::Interrupt);
        }
        if mm != cpu.mm() {
            events.push(Event::SwitchMm(mm));
        }
        events.push(Event::Run(Class::User));
        events
    }

    /// Every sequence of up to four returns to user mode, each after one of [`between`]:
    /// driving the model lazily gives the eager steps' actions and state, the armed exit
    /// actions are those the eager exit requires, and the invariants hold.
    #[test]
    fn lazy_returns_match_eager_steps() {
        fn walk(lazy: CpuState, eager: Vec<Event>, depth: usize, count: &mut u64) {
            *count += 1;
            if depth == 0 {
                return;
            }
            for (pending, mm) in between() {
                let mut lazy_next = lazy;
                let ret = lazy_next.return_to_user(pending, mm);
                let mut eager_cpu = lazy;
                let mut got = Vec::new();
                for event in eager_events(&lazy, pending, mm) {
                    got.push((event, eager_cpu.step(event)));
                }
                assert_eq!(lazy_next, eager_cpu, "{eager:?} then {pending:?} {mm:?}");
                let exit = got.iter().find(|(e, _)| *e == Event::Exit).map(|(_, a)| *a);
                assert_eq!(ret.at_exit, exit.unwrap_or(Actions::NONE));
                let foreign = got
                    .iter()
                    .find(|(e, _)| *e == Event::Interrupt)
                    .map(|(_, a)| *a);
                assert_eq!(ret.at_foreign, foreign.unwrap_or(Actions::NONE));
                assert_eq!(
                    ret.at_run,
                    got.last().map(|(_, a)| *a).unwrap_or(Actions::NONE)
                );
                // The armed actions are exactly what the previous return said.
                if pending.exit {
                    let mut before = lazy;
                    assert_eq!(ret.at_exit, before.step(Event::Exit));
                }
                let mut armed = lazy_next;
                assert_eq!(ret.next_exit, armed.step(Event::Exit));
                // No action is required twice for one return: each clears its structure.
                let mut seen = Actions::NONE;
                for a in ret.required() {
                    assert_eq!(Actions(seen.0 & a.0), Actions::NONE);
                    seen = seen.union(a);
                }
                let mut events = eager.clone();
                events.extend(got.iter().map(|(e, _)| *e));
                assert_eq!(run_sequence(Policies::DEFAULT, &events), Ok(()));
                walk(lazy_next, events, depth - 1, count);
            }
        }
        let mut count = 0;
        walk(CpuState::new(MmId(0)), Vec::new(), 4, &mut count);
        assert_eq!(count, 1 + 8 + 64 + 512 + 4096);
    }

    #[test]
    fn returns_of_one_process() {
        let mut cpu = CpuState::new(A);
        let quiet = Pending::default();
        let exit = Pending {
            exit: true,
            foreign: false,
        };
        // First return: nothing known of the kernel's data, the state is clear.
        assert_eq!(cpu.return_to_user(quiet, A).at_run, Actions::NONE);
        // Syscalls without exits need nothing, and arm the control flush for an exit.
        let ret = cpu.return_to_user(quiet, A);
        assert_eq!(ret.required(), [Actions::NONE; 3]);
        assert_eq!(ret.next_exit, actions(&CONTROL_FLUSH));
        // An exit for its own data clears the training, and no data flush follows.
        let ret = cpu.return_to_user(exit, A);
        assert_eq!(ret.at_exit, actions(&CONTROL_FLUSH));
        assert_eq!(ret.at_run, Actions::NONE);
        // An interrupt in the sensitive space: a data flush before user code.
        let ret = cpu.return_to_user(
            Pending {
                exit: true,
                foreign: true,
            },
            A,
        );
        assert_eq!(ret.at_exit, actions(&CONTROL_FLUSH));
        assert_eq!(ret.at_foreign, Actions::NONE);
        assert_eq!(ret.at_run, actions(&DATA_FLUSH));
        // Another process after an exit of this one: its data goes.
        let ret = cpu.return_to_user(exit, B);
        assert_eq!(ret.at_exit, actions(&CONTROL_FLUSH));
        assert_eq!(ret.at_run, actions(&DATA_FLUSH));
        // Another process without an exit in between: the training goes.
        let ret = cpu.return_to_user(quiet, A);
        assert_eq!(ret.at_run, actions(&CONTROL_FLUSH));
    }

    #[test]
    fn owners() {
        assert_eq!(Owners::Nobody.with(A), Owners::Only(A));
        assert_eq!(Owners::Only(A).with(A), Owners::Only(A));
        assert_eq!(Owners::Only(A).with(B), Owners::Mixed);
        assert_eq!(Owners::Mixed.with(A), Owners::Mixed);
        assert!(Owners::Nobody.at_most(A) && Owners::Only(A).at_most(A));
        assert!(!Owners::Only(B).at_most(A) && !Owners::Mixed.at_most(A));
        let mut origins = Origins::CLEAR;
        origins.record(Source::Kernel, Some(A));
        assert!(origins.allows(Sources::KERNEL, A));
        assert!(!origins.allows(Sources::USER, A));
        assert!(!origins.allows(Sources::KERNEL, B));
        origins.record(Source::Kernel, None);
        assert_eq!(origins.kernel, Owners::Mixed);
        assert!(!origins.allows(Sources::KERNEL, A));
    }
}
