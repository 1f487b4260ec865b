"""The arithmetic of an offline near-miss: the checkable steps of a worked answer (GSM8K
`<<a*b=c>>` annotations or plain `a * b = c` steps), the slips a person could make in one
(a miscount, a forgotten carry, a misplaced decimal point) and the sentence that states it.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from generator.annotations import ANNOTATION

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
        # 9.05 written 9.5; not 9.01 as 9.1, nine cents off: a slip is a tenth or more
        if len(cents) == 2 and cents[0] == "0" and cents[1] not in "01":
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
