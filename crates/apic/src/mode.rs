//! xAPIC / x2APIC mode selection as a pure state machine.
//!
//! The kernel reads CPUID and the MSRs, calls [`plan_for_bsp`] or
//! [`plan_for_ap`], and then writes each planned `IA32_APIC_BASE` value in
//! order. Every plan is checked step by step against [`is_legal`], which
//! encodes the SDM's "x2APIC state transitions": a WRMSR that attempts an
//! illegal transition raises #GP, so a wrong plan would fault at boot.

use crate::base::ApicBase;

/// The register-access mode of an enabled local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LapicMode {
    /// Legacy MMIO registers, 8-bit APIC IDs.
    XApic,
    /// MSR registers, 32-bit APIC IDs.
    X2Apic,
}

/// The APIC state selected by `IA32_APIC_BASE` (EN, EXTD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApicState {
    /// EN=0, EXTD=0: APIC globally disabled.
    Disabled,
    /// EN=1, EXTD=0.
    XApic,
    /// EN=1, EXTD=1.
    X2Apic,
    /// EN=0, EXTD=1: not a real state; writing it #GPs.
    Invalid,
}

impl ApicState {
    /// Every state, for exhaustive tests.
    pub const ALL: [ApicState; 4] =
        [ApicState::Disabled, ApicState::XApic, ApicState::X2Apic, ApicState::Invalid];

    /// State from the (EN, EXTD) bits.
    pub const fn from_bits(en: bool, extd: bool) -> Self {
        match (en, extd) {
            (false, false) => ApicState::Disabled,
            (true, false) => ApicState::XApic,
            (true, true) => ApicState::X2Apic,
            (false, true) => ApicState::Invalid,
        }
    }

    /// The (EN, EXTD) bits of this state.
    pub const fn bits(self) -> (bool, bool) {
        match self {
            ApicState::Disabled => (false, false),
            ApicState::XApic => (true, false),
            ApicState::X2Apic => (true, true),
            ApicState::Invalid => (false, true),
        }
    }

    /// The register-access mode, if the APIC is enabled.
    pub const fn mode(self) -> Option<LapicMode> {
        match self {
            ApicState::XApic => Some(LapicMode::XApic),
            ApicState::X2Apic => Some(LapicMode::X2Apic),
            _ => None,
        }
    }

    /// The state that enables `mode`.
    pub const fn enabled(mode: LapicMode) -> Self {
        match mode {
            LapicMode::XApic => ApicState::XApic,
            LapicMode::X2Apic => ApicState::X2Apic,
        }
    }
}

/// Whether one WRMSR to `IA32_APIC_BASE` may move the APIC from `from` to `to`.
///
/// Legal: xAPIC→x2APIC, xAPIC→disabled, x2APIC→disabled, disabled→xAPIC, and
/// rewriting the current valid state (a no-op for the state machine).
/// Illegal: x2APIC→xAPIC (must go through disabled), disabled→x2APIC (must go
/// through xAPIC), and anything into or out of the invalid state. (Reset and
/// INIT move the APIC without a WRMSR and are not modelled here.)
pub const fn is_legal(from: ApicState, to: ApicState) -> bool {
    use ApicState::*;
    matches!(
        (from, to),
        (XApic, X2Apic)
            | (XApic, Disabled)
            | (X2Apic, Disabled)
            | (Disabled, XApic)
            | (Disabled, Disabled)
            | (XApic, XApic)
            | (X2Apic, X2Apic)
    )
}

/// What mode selection needs to know about one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeInputs {
    /// `CPUID.01H:ECX[21]`: x2APIC supported.
    pub cpuid_x2apic: bool,
    /// Current `IA32_APIC_BASE`.
    pub apic_base: ApicBase,
    /// `IA32_XAPIC_DISABLE_STATUS` bit 0, or `None` when that MSR is not
    /// enumerated (see [`crate::base::x2apic_lock_state`]).
    pub x2apic_locked: Option<bool>,
}

impl ModeInputs {
    /// Firmware locked the APIC in x2APIC mode.
    pub const fn locked(&self) -> bool {
        matches!(self.x2apic_locked, Some(true))
    }

    /// x2APIC is usable: CPUID says so, or firmware already enabled or
    /// locked it (some hypervisors enable EXTD but hide the CPUID bit).
    pub const fn x2apic_available(&self) -> bool {
        self.cpuid_x2apic || self.apic_base.x2apic_enabled() || self.locked()
    }
}

/// Maximum number of `IA32_APIC_BASE` writes in any plan.
pub const MAX_PLAN_WRITES: usize = 2;

/// The outcome of mode selection: the mode to use and the `IA32_APIC_BASE`
/// values to write, in order, to get there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModePlan {
    /// Mode the CPU will be in after the writes.
    pub mode: LapicMode,
    writes: [ApicBase; MAX_PLAN_WRITES],
    len: usize,
}

impl ModePlan {
    /// The `IA32_APIC_BASE` values to write, in order (possibly none).
    pub fn writes(&self) -> &[ApicBase] {
        &self.writes[..self.len]
    }
}

/// Why no plan exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeError {
    /// `IA32_APIC_BASE` reads EN=0, EXTD=1, which hardware never produces.
    InvalidCurrentState(ApicBase),
    /// x2APIC is required (the BSP uses it) but this CPU cannot enable it.
    X2ApicUnavailable,
    /// xAPIC is required but firmware locked this CPU in x2APIC mode.
    X2ApicLocked,
    /// Internal guard: a computed step was illegal. Never expected; it
    /// exists so that a bug yields an error instead of a #GP.
    IllegalTransition {
        /// State before the write.
        from: ApicState,
        /// State the write would select.
        to: ApicState,
    },
}

/// Plans the boot CPU: x2APIC whenever available (CPUID bit, EXTD already
/// set, or locked), otherwise xAPIC.
pub fn plan_for_bsp(inputs: ModeInputs) -> Result<ModePlan, ModeError> {
    let target = if inputs.x2apic_available() { LapicMode::X2Apic } else { LapicMode::XApic };
    plan_to(inputs, target)
}

/// Why the boot CPU runs in the mode [`bsp_mode`] chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BspModeReason {
    /// x2APIC is available and nothing asked otherwise.
    X2ApicAvailable,
    /// The CPU cannot run x2APIC (no CPUID bit, not enabled or locked by firmware).
    X2ApicUnavailable,
    /// The firmware's DMAR sets X2APIC_OPT_OUT and left the APIC in xAPIC mode: stay there.
    FirmwareOptOut,
    /// The DMAR sets X2APIC_OPT_OUT, but firmware already enabled or locked x2APIC:
    /// leaving it would be a mode change the firmware itself did not make (or a #GP).
    OptOutButFirmwareX2Apic,
}

/// The boot CPU's mode as Linux chooses it: x2APIC whenever available, unless the firmware
/// opted out (the DMAR's X2APIC_OPT_OUT flag) and did not itself enable or lock x2APIC.
pub fn bsp_mode(inputs: ModeInputs, firmware_opt_out: bool) -> (LapicMode, BspModeReason) {
    let firmware_x2apic = inputs.apic_base.x2apic_enabled() || inputs.locked();
    match (inputs.x2apic_available(), firmware_opt_out) {
        (false, _) => (LapicMode::XApic, BspModeReason::X2ApicUnavailable),
        (true, false) => (LapicMode::X2Apic, BspModeReason::X2ApicAvailable),
        (true, true) if firmware_x2apic => {
            (LapicMode::X2Apic, BspModeReason::OptOutButFirmwareX2Apic)
        }
        (true, true) => (LapicMode::XApic, BspModeReason::FirmwareOptOut),
    }
}

/// Plans an application processor, which must use the BSP's mode
/// (`required`) so that IPIs and APIC-ID widths agree system-wide.
pub fn plan_for_ap(inputs: ModeInputs, required: LapicMode) -> Result<ModePlan, ModeError> {
    plan_to(inputs, required)
}

/// Plans the legal path from the current state to `target`.
pub fn plan_to(inputs: ModeInputs, target: LapicMode) -> Result<ModePlan, ModeError> {
    use ApicState::*;
    let base = inputs.apic_base;
    let path: &[ApicState] = match (base.state(), target) {
        (Invalid, _) => return Err(ModeError::InvalidCurrentState(base)),
        (_, LapicMode::X2Apic) if !inputs.x2apic_available() => {
            return Err(ModeError::X2ApicUnavailable)
        }
        (X2Apic, LapicMode::XApic) if inputs.locked() => return Err(ModeError::X2ApicLocked),
        (X2Apic, LapicMode::X2Apic) | (XApic, LapicMode::XApic) => &[],
        (XApic, LapicMode::X2Apic) => &[X2Apic],
        (Disabled, LapicMode::X2Apic) => &[XApic, X2Apic],
        (Disabled, LapicMode::XApic) => &[XApic],
        // Leaving x2APIC resets every APIC register except the ID.
        (X2Apic, LapicMode::XApic) => &[Disabled, XApic],
    };
    let mut plan = ModePlan { mode: target, writes: [base; MAX_PLAN_WRITES], len: 0 };
    let mut current = base.state();
    for &next in path {
        if !is_legal(current, next) || next == current {
            return Err(ModeError::IllegalTransition { from: current, to: next });
        }
        plan.writes[plan.len] = base.with_state(next);
        plan.len += 1;
        current = next;
    }
    debug_assert!(current == ApicState::enabled(target));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::{APIC_BASE_BSP, APIC_BASE_EN, APIC_BASE_EXTD};

    const BASE: u64 = 0xFEE0_0000 | APIC_BASE_BSP;

    fn inputs(state: ApicState, cpuid: bool, locked: Option<bool>) -> ModeInputs {
        ModeInputs {
            cpuid_x2apic: cpuid,
            apic_base: ApicBase::from_raw(BASE).with_state(state),
            x2apic_locked: locked,
        }
    }

    fn states(plan: &ModePlan) -> Vec<ApicState> {
        plan.writes().iter().map(|w| w.state()).collect()
    }

    /// Every input combination, for exhaustive checks.
    fn all_inputs() -> Vec<ModeInputs> {
        let mut v = Vec::new();
        for state in ApicState::ALL {
            for cpuid in [false, true] {
                for locked in [None, Some(false), Some(true)] {
                    v.push(inputs(state, cpuid, locked));
                }
            }
        }
        v
    }

    fn assert_plan_is_legal(input: &ModeInputs, plan: &ModePlan) {
        let mut current = input.apic_base.state();
        for w in plan.writes() {
            assert!(is_legal(current, w.state()), "{current:?} -> {:?} in {plan:?}", w.state());
            assert_ne!(current, w.state(), "no-op write in {plan:?}");
            // Only EN/EXTD may change.
            assert_eq!(
                w.raw() & !(APIC_BASE_EN | APIC_BASE_EXTD),
                input.apic_base.raw() & !(APIC_BASE_EN | APIC_BASE_EXTD)
            );
            current = w.state();
        }
        assert_eq!(current, ApicState::enabled(plan.mode));
        if input.locked() && input.apic_base.state() == ApicState::X2Apic {
            assert!(plan.writes().is_empty(), "left locked x2APIC: {plan:?}");
        }
    }

    #[test]
    fn legal_transition_table_matches_sdm() {
        use ApicState::*;
        assert!(is_legal(XApic, X2Apic));
        assert!(is_legal(XApic, Disabled));
        assert!(is_legal(X2Apic, Disabled));
        assert!(is_legal(Disabled, XApic));
        assert!(!is_legal(X2Apic, XApic), "x2APIC -> xAPIC must go through disabled");
        assert!(!is_legal(Disabled, X2Apic), "disabled -> x2APIC must go through xAPIC");
        for s in ApicState::ALL {
            assert!(!is_legal(s, Invalid));
            assert!(!is_legal(Invalid, s));
        }
    }

    #[test]
    fn bsp_prefers_x2apic_when_cpuid_says_so() {
        let plan = plan_for_bsp(inputs(ApicState::XApic, true, None)).unwrap();
        assert_eq!(plan.mode, LapicMode::X2Apic);
        assert_eq!(states(&plan), [ApicState::X2Apic]);
        assert_eq!(plan.writes()[0].raw(), BASE | APIC_BASE_EN | APIC_BASE_EXTD);
    }

    #[test]
    fn bsp_without_x2apic_stays_xapic_with_no_writes() {
        let plan = plan_for_bsp(inputs(ApicState::XApic, false, None)).unwrap();
        assert_eq!(plan.mode, LapicMode::XApic);
        assert!(plan.writes().is_empty());
    }

    #[test]
    fn bsp_already_in_x2apic_needs_no_writes_even_without_cpuid_bit() {
        let plan = plan_for_bsp(inputs(ApicState::X2Apic, false, None)).unwrap();
        assert_eq!(plan.mode, LapicMode::X2Apic);
        assert!(plan.writes().is_empty());
    }

    #[test]
    fn disabled_to_x2apic_goes_through_xapic() {
        let plan = plan_for_bsp(inputs(ApicState::Disabled, true, Some(false))).unwrap();
        assert_eq!(states(&plan), [ApicState::XApic, ApicState::X2Apic]);
        let plan = plan_for_bsp(inputs(ApicState::Disabled, false, None)).unwrap();
        assert_eq!((plan.mode, states(&plan)), (LapicMode::XApic, vec![ApicState::XApic]));
    }

    #[test]
    fn invalid_current_state_is_an_error() {
        let input = inputs(ApicState::Invalid, true, None);
        assert_eq!(plan_for_bsp(input), Err(ModeError::InvalidCurrentState(input.apic_base)));
    }

    #[test]
    fn ap_follows_bsp_x2apic_or_fails() {
        let plan = plan_for_ap(inputs(ApicState::XApic, true, None), LapicMode::X2Apic).unwrap();
        assert_eq!(states(&plan), [ApicState::X2Apic]);
        assert_eq!(
            plan_for_ap(inputs(ApicState::XApic, false, None), LapicMode::X2Apic),
            Err(ModeError::X2ApicUnavailable)
        );
    }

    #[test]
    fn ap_leaves_firmware_x2apic_through_disabled_for_xapic_bsp() {
        let plan =
            plan_for_ap(inputs(ApicState::X2Apic, true, Some(false)), LapicMode::XApic).unwrap();
        assert_eq!(plan.mode, LapicMode::XApic);
        assert_eq!(states(&plan), [ApicState::Disabled, ApicState::XApic]);
    }

    #[test]
    fn locked_x2apic_is_never_left() {
        assert_eq!(
            plan_for_ap(inputs(ApicState::X2Apic, true, Some(true)), LapicMode::XApic),
            Err(ModeError::X2ApicLocked)
        );
        let plan = plan_for_bsp(inputs(ApicState::X2Apic, false, Some(true))).unwrap();
        assert_eq!(plan.mode, LapicMode::X2Apic);
        assert!(plan.writes().is_empty());
    }

    #[test]
    fn every_plan_for_every_input_is_legal() {
        let mut plans = 0;
        for input in all_inputs() {
            for result in [
                plan_for_bsp(input),
                plan_for_ap(input, LapicMode::XApic),
                plan_for_ap(input, LapicMode::X2Apic),
            ] {
                match result {
                    Ok(plan) => {
                        assert_plan_is_legal(&input, &plan);
                        plans += 1;
                    }
                    Err(ModeError::IllegalTransition { .. }) => {
                        panic!("guard tripped for {input:?}")
                    }
                    Err(_) => {}
                }
            }
        }
        assert!(plans > 20);
    }

    #[test]
    fn bsp_policy_over_all_inputs() {
        for input in all_inputs() {
            let Ok(plan) = plan_for_bsp(input) else {
                assert_eq!(input.apic_base.state(), ApicState::Invalid);
                continue;
            };
            let want_x2 = input.cpuid_x2apic || input.apic_base.x2apic_enabled() || input.locked();
            assert_eq!(plan.mode == LapicMode::X2Apic, want_x2, "{input:?}");
        }
    }

    #[test]
    fn firmware_opt_out_keeps_xapic_unless_firmware_chose_x2apic() {
        use BspModeReason::*;
        // Opt-out honoured: x2APIC available by CPUID, firmware left xAPIC.
        let fresh = inputs(ApicState::XApic, true, None);
        assert_eq!(bsp_mode(fresh, false), (LapicMode::X2Apic, X2ApicAvailable));
        assert_eq!(bsp_mode(fresh, true), (LapicMode::XApic, FirmwareOptOut));
        assert!(plan_to(fresh, bsp_mode(fresh, true).0).unwrap().writes().is_empty());
        // Firmware already enabled x2APIC, or locked it: stay, whatever the flag says.
        let enabled = inputs(ApicState::X2Apic, true, None);
        assert_eq!(bsp_mode(enabled, true), (LapicMode::X2Apic, OptOutButFirmwareX2Apic));
        let locked = inputs(ApicState::X2Apic, false, Some(true));
        assert_eq!(bsp_mode(locked, true), (LapicMode::X2Apic, OptOutButFirmwareX2Apic));
        // No x2APIC at all: the flag changes nothing.
        let old = inputs(ApicState::XApic, false, None);
        assert_eq!(bsp_mode(old, true), (LapicMode::XApic, X2ApicUnavailable));
        // Without the flag it agrees with plan_for_bsp on every input, and every choice
        // plans legally where plan_for_bsp does.
        for i in all_inputs() {
            if let Ok(p) = plan_for_bsp(i) {
                assert_eq!(bsp_mode(i, false).0, p.mode, "{i:?}");
                for opt_out in [false, true] {
                    let plan = plan_to(i, bsp_mode(i, opt_out).0).unwrap();
                    assert_plan_is_legal(&i, &plan);
                }
            }
        }
    }
}
