/**
 * Dirty-logging strategies: the choices KVM has gone through (module parameters, kernel
 * versions), selectable per VM and compared in reports. Stored as bits in the VM's shared words
 * so every worker sees them. Defaults are current upstream KVM on a PML-capable host.
 *
 *   tracking   pml        4K leaves stay writable, D bits are cleared and the CPU logs D 0->1
 *                         transitions in a 512-entry buffer (kvm_intel.pml=1)
 *              wrprot     every leaf write-protected; the first write takes the fast page fault
 *   huge       lazy       with INITIALLY_SET, huge pages are write-protected only by CLEAR, per
 *                         64-page mask (Keqian Zhu's "enable dirty logging lazily for huge pages")
 *              wrprot-huge  huge pages write-protected at enable even with INITIALLY_SET (pre-5.13)
 *   split      eager      kvm.eager_page_split=Y: split at enable, or in CLEAR under INITIALLY_SET
 *              eager-enable  split at enable even under INITIALLY_SET
 *              eager-clear   split only in CLEAR (nothing at enable)
 *              on-fault   kvm.eager_page_split=N: a write to a huge page splits it in the fault
 *   recover    in-place   6.13+: rebuild huge SPTEs in place at disable, batched TLB flushes
 *              zap-collapsible  before 6.13: zap the 4K tables (one flush each), refault huge later
 *   folioDirty on-create  mark the folio dirty when a writable SPTE is created (6.13+)
 *              on-zap     mark it dirty when a dirty SPTE is zapped or its D bit cleared
 */
import { fail } from '../../host/errno.js';

export type DirtyTracking = 'pml' | 'wrprot';
export type HugeStrategy = 'lazy' | 'wrprot-huge';
export type SplitStrategy = 'eager' | 'eager-enable' | 'eager-clear' | 'on-fault';
export type RecoverStrategy = 'in-place' | 'zap-collapsible';
export type FolioDirtyStrategy = 'on-create' | 'on-zap';

export interface DirtyStrategy {
  tracking: DirtyTracking;
  huge: HugeStrategy;
  split: SplitStrategy;
  recover: RecoverStrategy;
  folioDirty: FolioDirtyStrategy;
}

export const kDefaultDirtyStrategy: DirtyStrategy = { tracking: 'pml', huge: 'lazy', split: 'eager', recover: 'in-place', folioDirty: 'on-create' };

export const kTrackingChoices = ['pml', 'wrprot'] as const;
export const kHugeChoices = ['lazy', 'wrprot-huge'] as const;
export const kSplitChoices = ['eager', 'eager-enable', 'eager-clear', 'on-fault'] as const;
export const kRecoverChoices = ['in-place', 'zap-collapsible'] as const;
export const kFolioDirtyChoices = ['on-create', 'on-zap'] as const;

export const enum Strat {
  kStratPml = 1 << 0,
  kStratWrprotHuge = 1 << 1,
  kStratSplitShift = 2,
  kStratSplitMask = 3 << Strat.kStratSplitShift,
  kStratZapCollapsible = 1 << 4,
  kStratFolioOnZap = 1 << 5,
}
export const enum SplitMode {
  kSplitEager = 0,
  kSplitOnFault = 1,
  kSplitEagerEnable = 2,
  kSplitEagerClear = 3,
}

function pick<T extends string>(what: string, v: T, choices: readonly string[]): number {
  const i = choices.indexOf(v);
  if (i < 0) fail('EINVAL', `unknown ${what} strategy '${v}' (one of ${choices.join(', ')})`);
  return i;
}

export function encodeStrategy(s: DirtyStrategy): number {
  let b = 0;
  if (pick('tracking', s.tracking, kTrackingChoices) === 0) b |= Strat.kStratPml;
  if (pick('huge', s.huge, kHugeChoices) === 1) b |= Strat.kStratWrprotHuge;
  b |= [SplitMode.kSplitEager, SplitMode.kSplitEagerEnable, SplitMode.kSplitEagerClear, SplitMode.kSplitOnFault][pick('split', s.split, kSplitChoices)]! << Strat.kStratSplitShift;
  if (pick('recover', s.recover, kRecoverChoices) === 1) b |= Strat.kStratZapCollapsible;
  if (pick('folio-dirty', s.folioDirty, kFolioDirtyChoices) === 1) b |= Strat.kStratFolioOnZap;
  return b;
}

export function decodeStrategy(b: number): DirtyStrategy {
  const split = (b & Strat.kStratSplitMask) >>> Strat.kStratSplitShift;
  return {
    tracking: b & Strat.kStratPml ? 'pml' : 'wrprot',
    huge: b & Strat.kStratWrprotHuge ? 'wrprot-huge' : 'lazy',
    split: split === SplitMode.kSplitEager ? 'eager' : split === SplitMode.kSplitEagerEnable ? 'eager-enable' : split === SplitMode.kSplitEagerClear ? 'eager-clear' : 'on-fault',
    recover: b & Strat.kStratZapCollapsible ? 'zap-collapsible' : 'in-place',
    folioDirty: b & Strat.kStratFolioOnZap ? 'on-zap' : 'on-create',
  };
}

// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 arguments
export const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1 << 0;
export const KVM_DIRTY_LOG_INITIALLY_SET = 1 << 1;
export const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
export const KVM_CAP_DIRTY_LOG_RING = 192;
