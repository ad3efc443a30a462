import { describe, expect, it } from 'vitest';
import {
  Spte, PgLevel, checkSpteWritableInvariants, isFrozenSpte, isLastSpte, isShadowPresentPte, makeSpteFlags, maxLevelForOrder, spteToU64, leafSpteChangeNeedsTlbFlush, spteIndex, gfnRoundForLevel,
} from '../src/kvm/mmu/spte.js';

describe('SPTE encoding', () => {
  it('places KVM bits where KVM has them in the 64-bit SPTE', () => {
    const f = makeSpteFlags(PgLevel.PG_LEVEL_2M, true, true);
    const u = spteToU64(f, 0x12345);
    expect(u & (1n << 11n)).toBe(1n << 11n); // SPTE_MMU_PRESENT_MASK
    expect(u & (1n << 7n)).toBe(1n << 7n); // PT_PAGE_SIZE_MASK
    expect(u & (1n << 57n)).toBe(1n << 57n); // EPT_SPTE_HOST_WRITABLE
    expect(u & (1n << 58n)).toBe(1n << 58n); // EPT_SPTE_MMU_WRITABLE
    expect((u >> 12n) & ((1n << 40n) - 1n)).toBe(0x12345n);
    expect(spteToU64(Spte.FROZEN_SPTE, 0)).toBe((1n << 63n) | 0x5a0n);
  });
  it('frozen is not present; writable leaf carries D', () => {
    expect(isShadowPresentPte(Spte.FROZEN_SPTE)).toBe(false);
    expect(isFrozenSpte(Spte.FROZEN_SPTE)).toBe(true);
    expect(makeSpteFlags(PgLevel.PG_LEVEL_4K, true, true) & Spte.SPTE_DIRTY).toBe(Spte.SPTE_DIRTY);
    expect(makeSpteFlags(PgLevel.PG_LEVEL_4K, false, true) & Spte.SPTE_DIRTY).toBe(0);
    expect(makeSpteFlags(PgLevel.PG_LEVEL_4K, false, true) & Spte.SPTE_MMU_PRESENT_MASK).toBe(Spte.SPTE_MMU_PRESENT_MASK);
  });
  it('levels, indices and flush rule', () => {
    expect(isLastSpte(makeSpteFlags(PgLevel.PG_LEVEL_4K, true, true), PgLevel.PG_LEVEL_4K)).toBe(true);
    expect(isLastSpte(makeSpteFlags(PgLevel.PG_LEVEL_1G, true, true), PgLevel.PG_LEVEL_1G)).toBe(true);
    expect(maxLevelForOrder(0)).toBe(PgLevel.PG_LEVEL_4K);
    expect(maxLevelForOrder(9)).toBe(PgLevel.PG_LEVEL_2M);
    expect(maxLevelForOrder(18)).toBe(PgLevel.PG_LEVEL_1G);
    expect(spteIndex(0x3ffff, 2)).toBe(511);
    expect(gfnRoundForLevel(0x40201, PgLevel.PG_LEVEL_2M)).toBe(0x40200);
    const w = makeSpteFlags(PgLevel.PG_LEVEL_4K, true, true);
    expect(leafSpteChangeNeedsTlbFlush(w, w & ~Spte.PT_WRITABLE_MASK)).toBe(false);
    expect(leafSpteChangeNeedsTlbFlush(w, w & ~(Spte.PT_WRITABLE_MASK | Spte.SPTE_MMU_WRITABLE))).toBe(true);
    expect(checkSpteWritableInvariants(w & ~Spte.SPTE_MMU_WRITABLE)).toMatch(/MMU-writable/);
    expect(checkSpteWritableInvariants(w & ~Spte.SPTE_HOST_WRITABLE)).toMatch(/host-writable/);
    expect(checkSpteWritableInvariants(w)).toBeNull();
  });
});
