"""near_miss: a worked answer that slips once, notices, corrects itself and finishes at the
reference final answer.

With a model, any domain works (reasoning, code, facts): the model writes the trace and
quotes its mistake and its recovery, which are located in the text and checked.

The offline path needs a checkable calculation: GSM8K `<<a*b=c>>` annotations or plain
`a * b = c` steps whose arithmetic it verifies. It changes one result to a plausible
wrong number, recovers right after that sentence, and keeps the rest verbatim.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from random import Random

from pydantic import BaseModel, Field

from generator.checks import final_answer
from generator.generators import Ask, Context, Generator, ReplyError, pick, register
from generator.values import Example, Seed, Skip

_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]*)>>")
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_OP = r"[-+*/×x÷]"
_PLAIN_STEP = re.compile(
    rf"(?<![\w.])(\$?{_NUM}(?:\s*{_OP}\s*\$?{_NUM})+)\s*=\s*\$?({_NUM})(?![\d])"
)
_RESULT = re.compile(rf"\$?({_NUM})")
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
    """A verified calculation in the (annotation-free) answer text."""

    expression: str
    result: str  # as written
    start: int  # where `result` stands in the text
    end: int


def strip_annotations(answer: str) -> tuple[str, list[Step]]:
    """The answer without `<<...>>` annotations, and the annotated steps that check out."""
    out, steps, last = [], [], 0
    length = 0
    for m in _ANNOTATION.finditer(answer):
        out.append(answer[last : m.start()])
        length += m.start() - last
        last = m.end()
        shown = _RESULT.match(answer, m.end())
        value, claimed = evaluate(m.group(1)), parse_number(m.group(2).strip())
        if (
            shown
            and value is not None
            and claimed is not None
            and _close(value, claimed)
            and parse_number(shown.group(1)) == claimed
        ):
            s = length + shown.start(1) - m.end()
            steps.append(Step(_spaced(m.group(1)), shown.group(1), s, s + len(shown.group(1))))
    out.append(answer[last:])
    return "".join(out), steps


def plain_steps(text: str) -> list[Step]:
    """`a op b = c` steps written out in the text whose arithmetic checks out."""
    steps = []
    for m in _PLAIN_STEP.finditer(text):
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


def slip_value(step: Step, kind: str) -> str | None:
    """A plausible wrong result for `step` by slip `kind`, written like the right one."""
    right = parse_number(step.result)
    if right is None:
        return None
    digits = step.result.replace(",", "")
    places = len(digits.split(".")[1]) if "." in digits else 0
    unit = Decimal(1).scaleb(-places)
    wrong: Decimal | None = None
    if kind == "off_by_one":
        wrong = right + unit if int(right / unit) % 2 == 0 else right - unit
    elif kind == "off_by_ten" and right >= 20 and places == 0:
        wrong = right - 10 if int(right) % 20 >= 10 else right + 10
    elif kind == "digit_swap":
        whole = digits.split(".")[0]
        if len(whole) >= 2 and whole[-1] != whole[-2]:
            swapped = whole[:-2] + whole[-1] + whole[-2]
            if not swapped.startswith("0"):
                wrong = parse_number(swapped + digits[len(whole) :])
    elif kind == "extra_group":
        factors = re.split(r"\s*[*×x]\s*", step.expression)
        if len(factors) == 2 and all(re.fullmatch(r"\$?\d+", f.strip()) for f in factors):
            first = Decimal(factors[0].strip().lstrip("$"))
            wrong = right + first if int(right) % 2 == 0 else right - first
    operands = {parse_number(n) for n in re.findall(_NUM, step.expression)}
    if wrong is None or wrong == right or wrong <= 0 < right or wrong in operands:
        # equal to an operand reads as a step skipped, not a slip made
        return None
    text = f"{wrong:.{places}f}"
    return f"{int(wrong):,}" if "," in step.result and places == 0 else text


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

    def requests(self, seed: Seed, rng: Random) -> list[Ask] | Skip:
        if not seed.response or not seed.response.strip():
            return self.skip(seed, "no_reference_answer")
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
        if not seed.response or not seed.response.strip():
            return self.skip(seed, "no_reference_answer")
        text, steps = strip_annotations(seed.response.strip())
        steps = steps or plain_steps(text)
        final = final_answer(seed.response)
        if not steps or final is None:
            return self.skip(seed, "no_worked_calculation")
        slips = [s for s in self.prompts.bank_list(self.bank, "slips")]
        options = [
            (step, kind, wrong)
            for step in steps
            for kind in slips
            if (wrong := slip_value(step, kind)) is not None
        ]
        if not options:
            return self.skip(seed, "no_plausible_slip")
        recoveries = pick(ctx.rng, self.prompts.bank_list(self.bank, "recoveries"), k)
        out = []
        for i, (step, kind, wrong) in enumerate(pick(ctx.rng, options, k)):
            example = self._trace(seed, text, step, kind, wrong, recoveries[i], final, i)
            if example is not None:
                out.append(example)
        return out or self.skip(seed, "no_plausible_slip")

    def _trace(
        self,
        seed: Seed,
        text: str,
        step: Step,
        kind: str,
        wrong: str,
        recovery_phrase: str,
        final: str,
        index: int,
    ) -> Example | None:
        s0, s1 = _sentence_bounds(text, step.start, step.end)
        sentence = text[s0:s1]
        slipped = (sentence[: step.start - s0] + wrong + sentence[step.end - s0 :]).rstrip()
        if not slipped.endswith((".", "!", "?", ":")):
            slipped += "."  # the recovery starts a new sentence
        recovery = self.prompts.phrase(
            self.bank, recovery_phrase, expression=step.expression, wrong=wrong, right=step.result
        )
        corrected = sentence.strip()
        response = self.prompts.render(
            self.template,
            before=text[:s0],
            slipped=slipped,
            recovery=recovery,
            corrected=corrected,
            after=text[s1:],
        )
        slip_at = response.find(slipped)
        recovery_at = response.find(recovery, slip_at + 1)
        if slip_at < 0 or recovery_at < 0:
            return None  # a user template that drops a piece: nothing to point at
        wrong_at = slip_at + (step.start - s0)
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
