"""How `sgl.select` turns per-choice token logprobs into a decision (`choices_method=`).

A backend scores every choice after the prompt (`ChoiceScores`: each choice's token logprobs,
and for methods that need them the same tokens scored with no prompt) and hands the scores to
the method, which returns the chosen index and the meta info the state keeps for the select.

- `token_length_normalized` (default): the highest mean token logprob; at temperature > 0 a
  sample from softmax(mean / T).
- `greedy_token_selection`: compare the choices' first tokens' logprobs, keep the best, then
  the second tokens' among those left, ... A choice that has run out of tokens stands in with
  its own mean logprob.
- `unconditional_likelihood_normalized`: the highest mean of (logprob after the prompt minus
  logprob without it), which discounts choices that are likely whatever was asked.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any


@dataclass
class ChoiceScores:
    choices: list[str]
    token_logprobs: list[list[float]]  # per choice: the logprobs of its tokens after the prompt
    # per choice: its tokens' logprobs with no prompt before them (the first token has none)
    unconditional_token_logprobs: list[list[float]] | None = None

    @property
    def normalized_logprobs(self) -> list[float]:
        return [mean(v) for v in self.token_logprobs]


@dataclass
class ChoicesDecision:
    index: int
    meta: dict[str, Any]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else -math.inf


def pick_choice(scores: list[float], temperature: float, rng: Any = random) -> int:
    """argmax (first on ties) at temperature 0; else a sample from softmax(scores / T)."""
    finite = [s for s in scores if math.isfinite(s)]
    if temperature <= 0 or not finite:
        return max(range(len(scores)), key=lambda i: (scores[i], -i))
    top = max(finite)
    weights = [math.exp((s - top) / temperature) if math.isfinite(s) else 0.0 for s in scores]
    return int(rng.choices(range(len(scores)), weights=weights)[0])


class ChoicesSamplingMethod:
    """Base of the select decision rules; subclasses define `decide`."""

    requires_unconditional_logprobs = False

    def __call__(self, scores: ChoiceScores, temperature: float = 0.0,
                 rng: Any = random) -> ChoicesDecision:
        if len(scores.token_logprobs) != len(scores.choices):
            raise ValueError("select needs token logprobs for every choice")
        meta: dict[str, Any] = {"normalized_prompt_logprobs": scores.normalized_logprobs,
                                "choices_method": type(self).__name__}
        return ChoicesDecision(self.decide(scores, temperature, rng, meta), meta)

    def decide(self, scores: ChoiceScores, temperature: float, rng: Any,
               meta: dict[str, Any]) -> int:
        raise NotImplementedError


class TokenLengthNormalized(ChoicesSamplingMethod):
    def decide(self, scores: ChoiceScores, temperature: float, rng: Any,
               meta: dict[str, Any]) -> int:
        return pick_choice(scores.normalized_logprobs, temperature, rng)


class GreedyTokenSelection(ChoicesSamplingMethod):
    def decide(self, scores: ChoiceScores, temperature: float, rng: Any,
               meta: dict[str, Any]) -> int:
        rows = scores.token_logprobs
        width = max((len(r) for r in rows), default=0)
        # Pad a short choice with its own mean so it neither wins nor loses by running out.
        padded = [list(r) + [mean(r)] * (width - len(r)) for r in rows]
        left = list(range(len(rows)))
        for j in range(width):
            best = max(padded[i][j] for i in left)
            left = [i for i in left if padded[i][j] == best]
            if len(left) == 1:
                break
        return left[0]


class UnconditionalLikelihoodNormalized(ChoicesSamplingMethod):
    requires_unconditional_logprobs = True

    def decide(self, scores: ChoiceScores, temperature: float, rng: Any,
               meta: dict[str, Any]) -> int:
        uncond = scores.unconditional_token_logprobs
        if uncond is None or len(uncond) != len(scores.choices):
            raise ValueError("unconditional_likelihood_normalized needs the backend to score "
                             "every choice without the prompt")
        # Means, not token-by-token differences: the choice may tokenize differently alone.
        # The choice's first token has no logprob alone (nothing precedes it).
        values = [mean(c) - (sum(u) / len(u) if u else 0.0)
                  for c, u in zip(scores.token_logprobs, uncond)]
        meta["unconditional_token_logprobs"] = uncond
        meta["normalized_unconditional_prompt_logprobs"] = values
        return pick_choice(values, 0.0)


token_length_normalized = TokenLengthNormalized()
greedy_token_selection = GreedyTokenSelection()
unconditional_likelihood_normalized = UnconditionalLikelihoodNormalized()

__all__ = [
    "ChoiceScores", "ChoicesDecision", "ChoicesSamplingMethod", "greedy_token_selection",
    "pick_choice", "token_length_normalized", "unconditional_likelihood_normalized",
]  # fmt: skip
