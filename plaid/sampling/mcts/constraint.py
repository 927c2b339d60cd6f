"""The one place MCTS touches plaid's grammar: which tokens may follow a parse state, and a rollout processor that
starts from a state inside the text instead of the grammar's initial state.

Only the public interface of ``plaid.sampling`` is used: a grammar from ``make_grammar`` (``initial``,
``can_end``; a ``State`` with ``u``, the token length of the shortest completion), ``TokenTrie.allowed`` and
``GrammarLogitsProcessor``.
"""

from __future__ import annotations


class _Resumed:
    """A grammar whose ``initial()`` is a state reached inside the text; everything else is the grammar's own."""

    def __init__(self, grammar, state):
        self._grammar = grammar
        self._state = state

    def initial(self):
        return self._state

    def __getattr__(self, name):
        return getattr(self._grammar, name)


class GrammarCursor:
    """Grammar + token trie of one prompt: allowed next tokens from a state, and a rollout logits processor."""

    def __init__(self, grammar, trie):
        self.grammar = grammar
        self.trie = trie
        self.eos_ids = list(trie.eos_ids)

    def initial(self):
        return self.grammar.initial()

    def allowed(self, state, budget: int) -> dict[int, object]:
        """token id -> state after it, for every token that keeps the text a prefix of a decodable crystal whose
        completion fits in ``budget`` more tokens; end-of-sequence ids map to None when the text may end here."""
        out: dict[int, object] = dict(self.trie.allowed(self.grammar, state, budget))
        if self.grammar.can_end(state):
            out.update({eos: None for eos in self.eos_ids})
        return out

    def processor(self, state, max_new_tokens: int):
        """A Hugging Face logits processor constraining one row that starts at ``state``."""
        from ..constrained import GrammarLogitsProcessor

        return GrammarLogitsProcessor([_Resumed(self.grammar, state)], self.trie, max_new_tokens)
