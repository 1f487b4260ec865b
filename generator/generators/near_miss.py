"""near_miss: a worked answer that slips once, notices, corrects itself and finishes at the
reference final answer.

With a model, any domain works (reasoning, code, facts): the model writes the trace and
quotes its mistake and its recovery, which are located in the text and checked.

The offline path needs a checkable calculation: GSM8K `<<a*b=c>>` annotations or plain
`a * b = c` steps whose arithmetic it verifies. It changes one result to a wrong number a
person could write (a slip of that kind of number: a miscount or a forgotten carry with
whole numbers, a misplaced decimal point with money), everywhere its sentence states it,
recovers right after that sentence, and keeps the rest verbatim. Annotations stay in the
trace; the run's policy on them applies to every behavior alike (generator.annotations).
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from random import Random

from pydantic import BaseModel, Field

from generator.annotations import ANNOTATION
from generator.answers import final_answer, same_final_answer
from generator.generators import Ask, Context, Generator, ReplyError, pick, register
from generator.values import Example, Seed, Skip, turns

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_OP = r"[-+*/×x÷]"
_PLAIN_STEP = re.compile(
    rf"(?<![\w.])(\$?{_NUM}(?:\s*{_OP}\s*\$?{_NUM})+)\s*=\s*\$?({_NUM})(?![\d])"
)
_RESULT = re.compile(rf"\$?({_NUM})")
_OPERAND = rf"{_NUM}|\.\d+"  # .5 is an operand too
_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def evaluate(expression: str) -> Decimal | None:
    """The value of a small arithmetic expression (+ - * / and parentheses), else None."""
    text = expression.replace(",", "").replace("$", "").replace("×", "*").replace("÷", "/")
    text = re.sub(r"(?<=\d)\s*x\s*(?=\d)", "*", text)
    if len(text) > 200:  # a step a person writes out, not a pasted sum of thousands of terms
        return None
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, RecursionError):
        return None

    def walk(node: ast.AST) -> Decimal:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return Decimal(str(node.value))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError("not arithmetic")

    try:
        return walk(tree.body)
    except (ValueError, ArithmeticError, InvalidOperation, RecursionError):
        return None


def parse_number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class Step:
    """A verified calculation in the answer text."""

    expression: str
    result: str  # as written
    start: int  # where `result` stands in the text
    end: int
    claimed: tuple[int, int] | None = None  # where its calculator annotation states it


def annotated_steps(answer: str) -> list[Step]:
    """The steps of `answer` whose `<<a*b=c>>` annotation checks out and is followed by
    its result, with their places in `answer` (annotations included)."""
    steps = []
    for m in ANNOTATION.finditer(answer):
        shown = _RESULT.match(answer, m.end())
        value, claimed = evaluate(m.group(1)), parse_number(m.group(2).strip())
        if (
            shown
            and re.search(_OP, m.group(1).strip()[1:])  # <<15=15>> is no calculation
            and value is not None
            and claimed is not None
            and _close(value, claimed)
            and parse_number(shown.group(1)) == claimed
        ):
            lead = len(m.group(2)) - len(m.group(2).lstrip())
            at = m.start(2) + lead
            steps.append(
                Step(
                    _spaced(m.group(1)),
                    shown.group(1),
                    shown.start(1),
                    shown.end(1),
                    claimed=(at, at + len(m.group(2).strip())),
                )
            )
    return steps


def plain_steps(text: str) -> list[Step]:
    """`a op b = c` steps written out in the text whose arithmetic checks out."""
    steps = []
    # Annotations blanked out (same length, so places stay): their insides are not steps.
    masked = ANNOTATION.sub(lambda m: " " * len(m.group()), text)
    for m in _PLAIN_STEP.finditer(masked):
        value, claimed = evaluate(m.group(1)), parse_number(m.group(2))
        if value is not None and claimed is not None and _close(value, claimed):
            steps.append(Step(_spaced(m.group(1)), m.group(2), m.start(2), m.end(2)))
    return steps


def _spaced(expression: str) -> str:
    """'48/2' as '48 / 2': how a person writes the step out when correcting it."""
    return " ".join(re.sub(rf"\s*({_OP})\s*", r" \1 ", expression.strip()).split())


def _close(value: Decimal, claimed: Decimal) -> bool:
    # Worked answers round: 10/3 = 3.33 is a correct step.
    exponent = claimed.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return abs(value - claimed) <= Decimal(1).scaleb(-places) / 2 + Decimal("1e-9")


# A slip is one a person makes with that kind of number: with whole numbers a miscount,
# a missed carry, swapped digits, one group too many; with decimals and money a misplaced
# decimal point, a dropped zero, a rounding slip (never one cent or one tenth off).
WHOLE_SLIPS = frozenset({"off_by_one", "off_by_ten", "digit_swap", "extra_group"})
DECIMAL_SLIPS = frozenset({"decimal_point", "dropped_zero", "rounding"})


def is_decimal(step: Step) -> bool:
    """A step with a decimal point in an operand, or a fraction in its result (8 * 18 =
    $144.00 is whole-number arithmetic written as money)."""
    right = parse_number(step.result)
    fraction = right is not None and right != right.to_integral_value()
    return fraction or bool(re.search(r"\.\d", step.expression))


def _fixed_zeros(expression: str) -> int:
    """Trailing zeros the result gets straight from its operands (22500 * 20 = 450,000 ends
    in 000 whatever else goes wrong): digits no slip of a person changes."""
    numbers = [n.replace(",", "") for n in re.findall(_OPERAND, expression)]
    ops = set(re.findall(rf"\s({_OP})\s", expression))
    zeros = [len(n) - len(n.rstrip("0")) if n.strip("0") else 0 for n in numbers]
    if not zeros or any("." in n for n in numbers):
        return 0
    if ops and ops <= {"*", "×", "x"}:
        return sum(zeros)
    if ops and ops <= {"+", "-"}:
        return min(zeros)
    return 0


def _missed_carry(expression: str, right: Decimal) -> Decimal | None:
    """The result with the carry (or borrow) out of the units column forgotten, where the
    step has one: 28 + 7 = 25, 2 * 16 = 22, 52 - 17 = 45."""
    numbers = [int(n.replace(",", "")) for n in re.findall(_NUM, expression)]
    ops = set(re.findall(rf"\s({_OP})\s", expression))
    if ops == {"+"} and max(numbers) >= 10:  # a tens column to carry into (not 5 + 8)
        carry = sum(n % 10 for n in numbers) // 10
        return right - 10 * carry if carry else None
    if ops == {"-"} and len(numbers) == 2:
        return right + 10 if numbers[0] % 10 < numbers[1] % 10 else None
    if ops and ops <= {"*", "×", "x"} and len(numbers) == 2:
        digit, other = sorted(numbers)
        carry = (other % 10) * digit // 10 if digit < 10 <= other else 0
        return right - 10 * carry if carry else None
    return None


def _within_bounds(ops: set[str], operands: list, wrong: Decimal) -> bool:
    """A wrong result still on the right side of what anyone sees at a glance: a
    difference no larger than what it is taken from (10 - 3 = 17 is no slip), a product of
    whole numbers no smaller than a factor. (A sum may fall below a term: 28 + 7 = 25 is
    the classic carry forgotten.)"""
    if None in operands or not operands:
        return True
    if ops == {"-"}:
        return wrong <= operands[0]
    if ops and ops <= {"*", "×", "x"} and all(o >= 1 for o in operands):
        return wrong >= max(operands)
    return True


def slip_value(step: Step, kind: str) -> str | None:
    """A plausible wrong result for `step` by slip `kind`, written like the right one
    (None when that slip does not fit the step)."""
    right = parse_number(step.result)
    if right is None or kind not in (DECIMAL_SLIPS if is_decimal(step) else WHOLE_SLIPS):
        return None
    operands = [parse_number(n) for n in re.findall(_OPERAND, step.expression)]
    ops = set(re.findall(rf"\s({_OP})\s", step.expression))
    for wrong, written in _slips(step, kind, right, ops):
        if (
            wrong != right
            and not wrong <= 0 < right
            and wrong not in operands  # equal to an operand reads as a step skipped
            and _within_bounds(ops, operands, wrong)
        ):
            return f"{wrong:,.{written}f}" if "," in step.result else f"{wrong:.{written}f}"
    return None


def _slips(step: Step, kind: str, right: Decimal, ops: set[str]):
    """Candidate wrong values of slip `kind`, best first, each with the decimal places it
    is written with."""
    digits = step.result.replace(",", "")
    places = len(digits.split(".")[1]) if "." in digits else 0
    fixed = _fixed_zeros(step.expression)
    if kind == "off_by_one" and (
        # a miscount in a sum or difference, or a quotient misjudged by one; never in a
        # product (2 * 3 = 7) nor in the round result of round numbers (2500 / 5 = 501)
        (ops <= {"+", "-"} and fixed == 0)
        or (not ops <= {"*", "×", "x"} and not ops <= {"+", "-"} and int(right) % 10)
    ):
        yield (right + 1 if int(right) % 2 == 0 else right - 1), places
    elif kind == "off_by_ten" and (carried := _missed_carry(step.expression, right)):
        yield carried, places
    elif kind == "digit_swap" and fixed == 0:
        whole = str(int(right))
        if len(whole) >= 2 and whole[-1] != whole[-2] and whole[-1] != "0":
            yield Decimal(whole[:-2] + whole[-1] + whole[-2]), places
    elif kind == "extra_group":
        # One group too many or too few: the group is the larger factor (2 * $500 slips
        # to $1,500, not $1,002).
        factors = re.split(r"\s*[*×x]\s*", step.expression)
        if len(factors) == 2 and all(re.fullmatch(r"\$?\d+", f.strip()) for f in factors):
            group = max(Decimal(f.strip().lstrip("$")) for f in factors)
            yield (right + group if int(right) % 2 == 0 else right - group), places
    elif kind == "decimal_point":
        # One place either way; money keeps its cents (9.05 becomes 90.50, not 0.905).
        for moved in (right / 10, right * 10) if int(right) % 2 else (right * 10, right / 10):
            needed = max(places, -min(0, moved.normalize().as_tuple().exponent))
            if places == 0 or needed == places:
                yield moved, needed
    elif kind == "dropped_zero":
        whole, _, cents = digits.partition(".")
        if len(cents) == 2 and cents[0] == "0" and cents[1] != "0":  # 9.05 written 9.5
            yield Decimal(f"{whole}.{cents[1]}"), 1
    elif kind == "rounding" and right >= 1:
        rounded = right.quantize(Decimal(1), rounding=ROUND_HALF_UP)  # 9.45 as 9
        if abs(rounded - right) >= Decimal("0.1"):  # 28.98 as 29 is two cents, not a slip
            yield rounded, 0


# A sentence ends at . ! ? before white space, but not after a title's abbreviation.
_SENTENCE_END = re.compile(r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)[.!?](?=\s)")


def _sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The sentence (or line) around [start, end)."""
    left = max(text.rfind("\n", 0, start), _last_sentence_end(text, start))
    right_candidates = [i for i in (text.find("\n", end),) if i != -1]
    m = _SENTENCE_END.search(text, end)
    if m:
        right_candidates.append(m.end())
    return left + 1 if left >= 0 else 0, min(right_candidates, default=len(text))


def _last_sentence_end(text: str, before: int) -> int:
    ends = [m.end() for m in _SENTENCE_END.finditer(text[:before])]
    return ends[-1] if ends else -1


# A number standing on its own (not part of a longer number or a word).
_STATED = re.compile(rf"(?<![\w.,]){_NUM}(?![\w]|[.,]\d)")
# Next to one of these a number is an operand or a result of some calculation.
_CALC_BEFORE = re.compile(r"(?:[-+*/×÷=(<]|(?<![A-Za-z])x)\s*\$?\s*$")
_CALC_AFTER = re.compile(r"\s*(?:[-+*/×÷=)>%]|x\s*\$?\d)")


def _written_like(value: Decimal, like: str) -> str:
    """`value` with the decimal places and thousands commas of `like` (more places when
    it needs them)."""
    digits = like.replace(",", "")
    places = len(digits.split(".")[1]) if "." in digits else 0
    places = max(places, -min(0, value.normalize().as_tuple().exponent))
    return f"{value:,.{places}f}" if "," in like else f"{value:.{places}f}"


def slipped_sentence(text: str, s0: int, s1: int, step: Step, wrong: str) -> tuple[str, int] | None:
    """The sentence text[s0:s1] with `step`'s result changed to `wrong` everywhere the
    sentence states it ("He eats 32 ... because 2 x 16 = 32": both), and where the step's
    own result now stands in it. None when the result also feeds another calculation in
    the sentence: a slip there would carry on, and that is more than one slip."""
    right, value = parse_number(step.result), parse_number(wrong)
    own = {(step.start, step.end), step.claimed}
    pieces, last, wrong_at = [], s0, None
    for m in _STATED.finditer(text, s0, s1):
        if parse_number(m.group()) != right:
            continue
        if m.span() not in own and (
            _CALC_BEFORE.search(text, s0, m.start()) or _CALC_AFTER.match(text, m.end(), s1)
        ):
            return None
        pieces.append(text[last : m.start()])
        if m.span() == (step.start, step.end):
            wrong_at = sum(map(len, pieces))
        pieces.append(wrong if m.span() in own else _written_like(value, m.group()))
        last = m.end()
    if wrong_at is None:
        return None
    pieces.append(text[last:s1])
    return "".join(pieces), wrong_at


class NearMissReply(BaseModel):
    """A model's near-miss trace and the quotes that locate its one slip and recovery."""

    domain: str = Field(description="reasoning, code, facts, or another one-word domain")
    response: str = Field(description="the whole answer: slip, recovery, correct finish")
    mistake: str = Field(description="the wrong part, copied exactly from response")
    correct: str = Field(description="what the wrong part should have said")
    recovery: str = Field(
        description="the sentence(s) that notice and fix the mistake, copied exactly "
        "from response; they must contain `correct`"
    )
    final_answer: str = Field(description="the final answer, as in the reference")


@register
class NearMiss(Generator):
    name = "near_miss"
    template = "near_miss/offline.j2"
    bank = "near_miss/phrases.toml"
    reply_model = NearMissReply
    spans = ("slip", "recovery")
    order = 30

    def requests(self, seed: Seed, rng: Random) -> list[Ask] | Skip:
        if skip := self.unsuitable(seed):
            return skip
        return [self.ask(seed, final_answer=final_answer(seed.response) or "")]

    def parse(
        self, seed: Seed, ask: Ask, reply: NearMissReply, sample: int, model: str
    ) -> list[Example]:
        text = reply.response.strip()
        mistake, recovery = reply.mistake.strip(), reply.recovery.strip()
        if not mistake or not recovery:
            raise ReplyError("mistake and recovery must both be quoted from response")
        s0 = text.find(mistake)
        if s0 < 0:
            raise ReplyError("mistake is not in response; copy it exactly, character for character")
        r0 = text.find(recovery, s0 + len(mistake))
        if r0 < 0:
            raise ReplyError(
                "recovery is not in response after the mistake; copy it exactly, "
                "and put it after the mistake"
            )
        attributes = {
            "domain": reply.domain.strip().lower(),
            "slip": {
                "kind": "model",
                "expression": None,
                "wrong": mistake,
                "right": reply.correct.strip(),
                "start": s0,
                "end": s0 + len(mistake),
            },
            "recovery": {"start": r0, "end": r0 + len(recovery)},
            "final_answer": reply.final_answer.strip(),
            "confidence": None,
        }
        return [self.model_example(seed, "near_miss", sample, seed.prompt, text, attributes, model)]

    def offline(self, seed: Seed, ctx: Context, k: int) -> list[Example] | Skip:
        if skip := self.unsuitable(seed):
            return skip
        # The trace is built on the answer as it is, annotations included: the run's
        # policy on them (generator.annotations) applies to every behavior's output alike.
        text = seed.response.strip()
        steps = annotated_steps(text) or plain_steps(text)
        final = final_answer(seed.response)
        if not steps or final is None:
            return self.skip(seed, "no_worked_calculation")
        slips = [s for s in self.prompts.bank_list(self.bank, "slips")]
        options = []
        for step in steps:
            bounds = _sentence_bounds(text, step.start, step.end)
            for kind in slips:
                wrong = slip_value(step, kind)
                if wrong is not None and (slipped := slipped_sentence(text, *bounds, step, wrong)):
                    options.append((step, bounds, kind, wrong, slipped))
        if not options:
            return self.skip(seed, "no_plausible_slip")
        recoveries = pick(ctx.rng, self.prompts.bank_list(self.bank, "recoveries"), k)
        out = []
        for i, option in enumerate(pick(ctx.rng, options, k)):
            example = self._trace(seed, text, *option, recoveries[i], final, i)
            if example is not None:
                out.append(example)
        return out or self.skip(seed, "no_plausible_slip")

    def _trace(
        self,
        seed: Seed,
        text: str,
        step: Step,
        bounds: tuple[int, int],
        kind: str,
        wrong: str,
        slipped: tuple[str, int],
        recovery_phrase: str,
        final: str,
        index: int,
    ) -> Example | None:
        s0, s1 = bounds
        slipped_text, wrong_offset = slipped
        slipped_text = slipped_text.rstrip()
        if not slipped_text.endswith((".", "!", "?", ":")):
            slipped_text += "."  # the recovery starts a new sentence
        recovery = self.prompts.phrase(
            self.bank, recovery_phrase, expression=step.expression, wrong=wrong, right=step.result
        )
        response = self.prompts.render(
            self.template,
            before=text[:s0],
            slipped=slipped_text,
            recovery=recovery,
            corrected=text[s0:s1].strip(),
            after=text[s1:],
        )
        slip_at = response.find(slipped_text)
        recovery_at = response.find(recovery, slip_at + 1)
        if slip_at < 0 or recovery_at < 0:
            return None  # a user template that drops a piece: nothing to point at
        wrong_at = slip_at + wrong_offset
        attributes = {
            "slip": {
                "kind": kind,
                "expression": step.expression,
                "wrong": wrong,
                "right": step.result,
                "start": wrong_at,
                "end": wrong_at + len(wrong),
            },
            "recovery": {"start": recovery_at, "end": recovery_at + len(recovery)},
            "final_answer": final,
            "confidence": None,
        }
        return self.example(seed, "near_miss", index, seed.prompt, response, attributes)

    # ----------------------------------------------------------------- its policy

    def cue_keys(self) -> tuple[str, ...]:
        return ("recovery",)

    def check(self, example: Example, reference: str | None) -> list[str]:
        """One marked slip, a recovery (a cue and the right value) only after it, and the
        reference's final answer at the end."""
        text = example.response
        slip = example.attributes.get("slip") or {}
        recovery = example.attributes.get("recovery") or {}
        try:
            s0, s1 = int(slip["start"]), int(slip["end"])
            r0, r1 = int(recovery["start"]), int(recovery["end"])
        except (KeyError, TypeError, ValueError):
            return ["near_miss_unmarked"]
        cues = self.cues("recovery")
        failures = []
        if text[s0:s1] != str(slip.get("wrong")) or not s1 <= r0 < r1 <= len(text):
            failures.append("near_miss_unmarked")
        else:
            said = text[r0:r1]
            if str(slip.get("right")) not in said or not any(p.search(said) for p in cues):
                failures.append("near_miss_no_recovery")
        # Exactly one marked slip: recovery cues may appear inside the recovery only.
        found = [m.span() for p in cues for m in p.finditer(text)]
        if any(not (r0 <= a and b <= r1) for a, b in found):
            failures.append("near_miss_extra_slip")
        final = example.attributes.get("final_answer")
        if not same_final_answer(str(final or ""), reference or "", text, r1):
            failures.append("near_miss_wrong_final_answer")
        return failures

    @classmethod
    def sample_note(cls, row: dict) -> str | None:
        slip = (row.get("attributes") or {}).get("slip") or {}
        return f"slip {slip.get('kind')}: {slip.get('wrong')} → {slip.get('right')}"

    @classmethod
    def wrong_answers(cls, rows: list[dict]) -> list[str]:
        return [cut for row in rows if (cut := unrecovered(row))]

    @classmethod
    def preference_pairs(cls, rows: list[dict], wrong: list[str]) -> list[tuple[str, ...]]:
        """The recovered trace chosen over the same trace cut just before its recovery,
        so the slip stands and no answer follows."""
        made = []
        for row in rows:
            if cut := unrecovered(row):
                prompt, trace = turns(row)
                made.append(("near_miss", prompt, trace, cut))
        return made


def unrecovered(row: dict) -> str | None:
    """A near-miss trace cut just before its recovery: the slip is made and left standing,
    and the answer never arrives."""
    _, response = turns(row)
    start = ((row.get("attributes") or {}).get("recovery") or {}).get("start")
    if not isinstance(start, int) or start <= 0:
        return None
    return response[:start].rstrip() or None
