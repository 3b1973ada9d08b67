"""`sgl.separate_reasoning(sgl.gen("answer"), model_type="deepseek-r1")`: after the wrapped
gen (or select) runs, its variable holds only the answer and `answer_reasoning_content` the
model's thinking, split with the reasoning format of that name (`sglang.protocol.reasoning`:
deepseek-r1, qwen3, ...). The program's text keeps the whole output, thinking included, so the
model sees what it wrote on the next turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sglang.lang import ir
from sglang.protocol.reasoning import reasoning_format, split_reasoning

if TYPE_CHECKING:
    from sglang.lang.interpreter import StreamExecutor

REASONING_SUFFIX = "_reasoning_content"


@dataclass(eq=False)
class SglSeparateReasoning(ir.SglExpr):
    """Runs after the gen `target`: rewrites it and sets `name` (its reasoning)."""

    model_type: str
    target: str

    @property
    def name(self) -> str:
        return self.target + REASONING_SUFFIX

    @property
    def also_sets(self) -> tuple[str, ...]:
        # Readers of the gen's variable wait for the split, not just for the gen.
        return (self.target,)


def _target_name(expr: ir.SglExpr) -> str:
    """The variable of the last named gen/select in `expr`."""
    named = [e for e in ir.flatten(expr)
             if isinstance(e, (ir.SglGen, ir.SglSelect)) and e.name]
    if not named:
        raise ValueError("separate_reasoning needs a named sgl.gen or sgl.select, e.g. "
                         "sgl.separate_reasoning(sgl.gen('answer'), model_type='deepseek-r1')")
    return str(named[-1].name)


def separate_reasoning(expr: Any, model_type: str | None = None) -> ir.SglExprList:
    """`expr` followed by the split of its variable into answer and reasoning."""
    if model_type is None:
        raise ValueError("separate_reasoning needs model_type, the reasoning format's name "
                         "(e.g. 'deepseek-r1', 'qwen3')")
    reasoning_format(model_type)  # ValueError naming the known ones, at program build time
    expr = ir.to_expr(expr)
    return ir.SglExprList([expr, SglSeparateReasoning(model_type, _target_name(expr))])


def execute_separate_reasoning(ex: StreamExecutor, node: SglSeparateReasoning) -> None:
    text = ex.vars.values.get(node.target)
    if not isinstance(text, str):
        raise TypeError(f"separate_reasoning: variable {node.target!r} holds "
                        f"{type(text).__name__}, not the text of one generation")
    reasoning, content = split_reasoning(text, reasoning_format(node.model_type))
    ex.set_var(node.target, content, ex.vars.meta.get(node.target))
    ex.set_var(node.name, reasoning or "")


__all__ = ["REASONING_SUFFIX", "SglSeparateReasoning", "separate_reasoning"]
