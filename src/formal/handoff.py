"""The integer hand-off unit's harness: :class:`~wafertile.hdl.core.units.Requantizer` alone,
beside a model of the MAC's multiplier, with its real arithmetic.

The environment is the core's side of the unit's contract (``docs/architecture.md``): a
FINISH starts the unit (``start``) only when it is idle or its output goes in that cycle; the
accumulator and the registers are any values; the multiplier is ``free`` or not in any
cycle, and ``ready`` is free. The harness's product register is the MAC's: it loads
``mul_a * mul_b`` when the unit multiplies and any value (a MAC's product) when the
multiplier is not free, and holds otherwise.

A scoreboard keeps the accumulator and the registers of the FINISH that started the unit,
the harness's count of its multiplies and the product of each. Properties:

- ``multiplies_when_free``: the unit takes the multiplier only when it is free;
- ``multiplies_its_limbs``: the ``j``-th multiply of a FINISH is its accumulator's limb
  ``n - 1 - j`` (the top one first: ``acc[17 * (n - 1):]`` signed, the others 17 bits
  unsigned) times its MULT, and there are ``n`` of them;
- ``one_output_each``: an activation is offered only for a FINISH that has not had one;
- ``output_value``: the activation offered is ``docs/architecture.md``'s of that FINISH:
  ``p`` the sum of the limbs' products, each shifted into place, rounded as
  :func:`~wafertile.sim.models.core.requantize` does (floor, remainder, threshold), RELU,
  clamp; so, with the products right, the activation of ``acc * MULT``;
- ``output_holds``: an offered activation stays, unchanged, until it is taken.

That the limbs' products sum to ``acc * MULT`` is the distributive law; the solver is never
asked to multiply two free values against each other (equivalence of multipliers is what
SAT solvers do worst). Proved by k-induction with invariants (``inv_*``) on the unit's
registers (:attr:`~wafertile.hdl.core.units.Requantizer.state`).
"""

from __future__ import annotations

from amaranth.asserts import AnySeq
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value

from ..config import Config
from ..hdl.core.units import LIMB, Requantizer, limbs
from ..hdl.flit import MULT_WIDTH
from .harness import Harness
from .props import Properties

__all__ = ["HandoffHarness", "spec_requantize"]


def spec_requantize(config: Config, p: Value, shift: Value, relu: Value) -> Value:
    """FINISH's activation from the exact product ``p = acc * MULT``, as
    :func:`~wafertile.sim.models.core.requantize` computes it: ``floor = p >> shift``,
    ``remainder = p & (2**shift - 1)``, one more where the remainder is above ``(2**shift -
    1) >> 1`` plus one for a negative ``p`` (ties away from zero); 0 where RELU and negative;
    clamped to ``data_min .. data_max``."""
    p = Value.cast(p).as_signed()
    mask = (Const(1, 1) << shift) - 1
    floor = p >> shift
    remainder = p.as_unsigned() & mask
    threshold = (mask >> 1) + (p < 0)
    r = floor + (remainder > threshold)
    r = Mux(relu & (r < 0), 0, r)
    return Mux(r < config.data_min, config.data_min, Mux(r > config.data_max, config.data_max,
                                                         r))


class HandoffHarness(Harness):
    """The integer hand-off unit of ``config`` alone (module documentation)."""

    def make_dut(self):
        """The unit under test (a mutation replaces it)."""
        return Requantizer(self.config)

    def build(self, m: Module, props: Properties) -> None:
        cfg = self.config
        n = limbs(cfg.acc_width)
        m.submodules.dut = dut = self.make_dut()
        regs = [reg.name.lower() for reg in Requantizer.registers(cfg)]
        for sig in [dut.acc, dut.start, dut.free, dut.ready] + [getattr(dut, r) for r in regs]:
            m.d.comb += sig.eq(AnySeq(len(sig)))
        takes = dut.valid & dut.ready
        props.assume("start_when_idle", ~dut.start | ~dut.active | takes,
                     "a FINISH starts the unit only when it is idle or its output goes now")

        # The MAC's product register: the unit's product when it multiplies, a MAC's when the
        # multiplier is not free, else held.
        product = Signal.like(dut.product, name="mac_product")
        with m.If(dut.mul_en):
            m.d.sync += product.eq(dut.mul_a * dut.mul_b)
        with m.Elif(~dut.free):
            m.d.sync += product.eq(AnySeq(len(product)))
        m.d.comb += dut.product.eq(product)

        # The scoreboard: the FINISH in the unit, its multiplies and their products.
        busy = Signal(name="finish_in_unit")
        acc = Signal.like(dut.acc, name="finish_acc")
        mine = {r: Signal.like(getattr(dut, r), name=f"finish_{r}") for r in regs}
        count = Signal(range(n + 1), name="multiplies")
        caps = Array(Signal.like(product, name=f"limb_product{j}") for j in range(n))
        with m.If(dut.start):
            m.d.sync += [busy.eq(1), acc.eq(dut.acc), count.eq(0)]
            m.d.sync += [mine[r].eq(getattr(dut, r)) for r in regs]
        with m.Elif(takes):
            m.d.sync += busy.eq(0)
        with m.If(dut.mul_en & ~dut.start):
            m.d.sync += [count.eq(count + 1), caps[count].eq(dut.mul_a * dut.mul_b)]

        parts = [acc[LIMB * j:LIMB * (j + 1)].as_unsigned() for j in range(n - 1)]
        parts.append(acc[LIMB * (n - 1):].as_signed())
        limb = Array(parts[n - 1 - j] for j in range(n))[count]  # the j-th multiply's
        props.check("multiplies_when_free", ~dut.mul_en | dut.free,
                    "the unit takes the MAC's multiplier only in a cycle it is free")
        props.check("multiplies_its_limbs", ~dut.mul_en | (
            busy & (count < n) & (dut.mul_a == limb) & (dut.mul_b == mine["mult"])),
            f"the unit's multiplies are its FINISH's {n} limb(s), the top one first, each "
            f"times its MULT")
        # p from the products: the top limb's shifted up by 17 bits per limb below it
        width = len(dut.state["p"])
        p_spec = sum((Value.cast(caps[j]).as_signed() << (LIMB * (n - 1 - j)))
                     for j in range(n))
        want = spec_requantize(cfg, p_spec, mine["shift"], mine["relu"])
        props.check("one_output_each", ~dut.valid | (busy & (count == n)),
                    "an activation is offered only for a FINISH that has not had one, after "
                    "all its multiplies")
        props.check("output_value", ~dut.valid | (dut.o == want),
                    "the activation is the FINISH's: its limbs' products summed, rounded to "
                    "nearest (ties away from zero) by SHIFT, RELU, clamped")
        waiting = Signal(name="output_waiting")
        held = Signal.like(dut.o, name="output_held")
        m.d.sync += [waiting.eq(dut.valid & ~dut.ready), held.eq(dut.o)]
        with m.If(waiting):
            props.check("output_holds", dut.valid & (dut.o == held),
                        "an offered activation stays, unchanged, until it is taken")

        # The invariants: the unit's registers against the scoreboard.
        st = dut.state
        step, fresh, copies = st["step"], st["fresh"], st["copies"]
        props.check("inv_busy", (dut.active == busy) & (~busy | (step == count)),
                    "invariant: the unit is active exactly while a FINISH is in it, its step "
                    "the harness's count of multiplies")
        props.check("inv_copies", ~busy | ((copies["acc"] == acc) & Cat(
            copies[r] == mine[r] for r in regs).all()),
            "invariant: the unit's copies are its FINISH's accumulator and registers")
        props.check("inv_t", ~busy | (st["t"] == Mux(copies["shift"] == 0, 0,
                                                      copies["shift"] - 1)),
                    "invariant: the rounding's shift is the copied SHIFT less one (0 for 0)")
        props.check("inv_fresh", ~fresh | (busy & (step != 0) & (product == caps[step - 1])),
                    "invariant: the cycle after a multiply the product register holds its "
                    "product")
        # each product captured so far fits its limb's range (signed top limb of tb bits, the
        # others 17 bits unsigned, times a MULT_WIDTH-bit MULT): the sums then never wrap
        top_bits = cfg.acc_width - LIMB * (n - 1)
        for j in range(n):
            bits = (top_bits if j == 0 else LIMB + 1) + MULT_WIDTH
            cap = Value.cast(caps[j]).as_signed()
            props.check(f"inv_product{j}_fits", (count <= j) | (cap == cap[:bits].as_signed()),
                        f"invariant: the product of multiply {j} fits {bits} signed bits")
        summed = step - fresh  # products already added
        for j in range(1, n + 1):
            partial = sum((Value.cast(caps[i]).as_signed() << (LIMB * (j - 1 - i)))
                          for i in range(j))
            target = st["p"] if j == n else st["high"]
            props.check(f"inv_sum{j}", ~busy | (summed != j) |
                        (target == partial[:width].as_signed()),
                        f"invariant: once {j} product(s) are added, "
                        f"{'p' if j == n else 'high'} is their sum, each shifted into place")
        props.cover("output_taken", takes, "an activation is offered and taken")
        back = Signal(name="taken_before")
        with m.If(takes):
            m.d.sync += back.eq(1)
        props.cover("back_to_back", takes & dut.start & back,
                    "a FINISH starts the unit in the cycle the previous one's output goes")
        props.cover("multiplier_busy", busy & ~dut.free & (count < n),
                    "a MAC takes the multiplier while the unit has a limb to multiply")

