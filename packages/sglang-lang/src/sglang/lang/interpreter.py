"""StreamExecutor: runs one program state's IR nodes, in order, on its own worker thread.

The program body runs in the caller's thread and only *submits* nodes, so `f.run()` returns as
soon as the body has been walked; reading a variable waits for the node that sets it. Errors
raised while executing are kept in `error_` (the remaining nodes are skipped) and re-raised
where a missing variable is read.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from sglang.global_config import global_config
from sglang.lang import generation, ir
from sglang.lang.backend.base import BaseBackend, Context, GenParams
from sglang.lang.chat_speculative import ChatSpecPlan
from sglang.lang.chat_template import ChatTemplate
from sglang.lang.reasoning import SglSeparateReasoning, execute_separate_reasoning
from sglang.lang.speculative import SpecBuffer
from sglang.lang.variables import Variables

_END = object()  # queue sentinel: the body is done, the worker may exit once the queue is empty


class StopTracing(BaseException):
    """Raised when a traced program reaches something that is not constant text. A
    BaseException so that a broad `except Exception` in user code cannot swallow it."""


class StreamExecutor:
    def __init__(
        self,
        backend: BaseBackend,
        default_params: GenParams,
        chat_template: ChatTemplate,
        *,
        stream: bool = False,
        num_api_spec_tokens: int | None = None,
        tracing: bool = False,
    ) -> None:
        self.backend = backend
        self.default_params = default_params
        self.template = chat_template
        self.stream = stream
        self.num_api_spec_tokens = num_api_spec_tokens
        self.tracing = tracing  # executes nodes inline and stops at the first non-constant one

        self.text_ = ""
        self.messages_: list[dict[str, str]] = []
        self.media_: list[dict[str, Any]] = []
        self.cur_role: str | None = None
        self.role_begin_pos = 0
        self.seen_role = False
        self.vars = Variables()
        self.fork_start = 0
        self.error_: BaseException | None = None
        self.children: list[StreamExecutor] = []
        self.spec = SpecBuffer()
        self.chat_spec: ChatSpecPlan | None = None  # an open speculative assistant block
        self.spec_block_vars: set[str] | None = None  # its gens, as the body submitted them

        self._scopes: dict[str, int] = {}
        self.gen_var: str | None = None
        # Streaming: (piece, names of the variables it belongs to); (None, name) marks a var done.
        self.pieces: list[tuple[str | None, Any]] = []
        self.cond = threading.Condition()
        self.finished = False
        self.body_done = threading.Event()
        self.body_ident: int | None = None

        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._alive = False
        self._closed = False

    # ---- submission and the worker ----------------------------------------------------------

    def submit(self, node: ir.SglExpr) -> None:
        self._register(node)
        self._track_spec_block(node)
        if self.tracing:
            self._execute(node)
            return
        with self._lock:
            self._queue.put(node)
            if self._closed:  # appended after the body finished: let the worker exit again
                self._queue.put(_END)
            if not self._alive:
                self._alive = True
                threading.Thread(target=self._worker_loop, daemon=True).start()

    def _track_spec_block(self, node: ir.SglExpr) -> None:
        """Submission side of chat speculation: the gens of an open speculative assistant block
        are only set when the block ends, so a read of one before then would wait forever."""
        if isinstance(node, ir.SglRoleBegin) and node.role == "assistant":
            if self.num_api_spec_tokens and getattr(
                    self.backend, "supports_chat_speculation", False):
                self.spec_block_vars = set()
        elif isinstance(node, ir.SglRoleEnd):
            self.spec_block_vars = None
        elif isinstance(node, ir.SglGen) and self.spec_block_vars is not None and node.name:
            self.spec_block_vars.add(node.name)

    def end(self) -> None:
        """The body will submit nothing more; the worker exits after draining the queue."""
        self.body_done.set()
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._alive:
                    self._queue.put(_END)
                else:
                    self._mark_finished()
        for child in self.children:
            child.end()

    def sync(self) -> None:
        self._queue.join()

    def _worker_loop(self) -> None:
        while True:
            node = self._queue.get()
            try:
                if node is _END:
                    with self._lock:  # submit() holds the lock while it puts, so empty() is exact
                        if self._queue.empty():
                            self._alive = False
                            self._mark_finished()
                            return
                    continue
                if self.error_ is None:
                    try:
                        self._execute(node)
                    except Exception as e:  # kept for error()/reads; the rest is skipped
                        self._fail(e)
            finally:
                self._queue.task_done()

    def _mark_finished(self) -> None:
        with self.cond:
            self.finished = True
            self.cond.notify_all()

    def _fail(self, error: BaseException) -> None:
        if self.error_ is None:
            self.error_ = error
        self.vars.wake_all()  # readers see the error instead of waiting forever
        with self.cond:
            self.cond.notify_all()

    # ---- variables -------------------------------------------------------------------------

    def _register(self, node: ir.SglExpr) -> None:
        name = getattr(node, "name", None)
        if name is not None and not isinstance(node, ir.SglVarScopeEnd):
            self.vars.register(name, failed=self.error_ is not None)
        for extra in getattr(node, "also_sets", ()):  # a node that rewrites other variables
            self.vars.register(extra, failed=self.error_ is not None)

    def set_var(
        self, name: str, value: Any, meta: dict[str, Any] | None = None, dtype: Any = None
    ) -> None:
        self.vars.set(name, value, meta, dtype)
        if self.stream:
            self._record(None, name)

    def get_var(self, name: str) -> Any:
        if self.tracing:
            raise StopTracing
        if self.spec_block_vars and name in self.spec_block_vars:
            raise ValueError(f"variable {name!r} is read inside the speculative assistant block "
                             "that generates it; it is set when the block ends")
        event = self.vars.event(name)
        if event is None and threading.get_ident() != self.body_ident:
            self.body_done.wait()  # a streaming body may not have submitted it yet
            event = self.vars.event(name)
        if event is not None:
            event.wait()
        if name not in self.vars.values:
            if self.error_ is not None:
                raise self.error_
            raise KeyError(self._missing_var_message(name))
        return self.vars.get(name)

    def _missing_var_message(self, name: str) -> str:
        # A fork's variables reach its parent only through join(): say so when that is why.
        if any(name in child.vars.values or child.vars.event(name) for child in self.children):
            return (f"the program has no variable {name!r} yet: it is set in a fork; call "
                    f"join() on the forks first (the parent then holds the list of their values)")
        return f"the program has no variable {name!r}"

    # ---- execution -------------------------------------------------------------------------

    def _execute(self, node: ir.SglExpr) -> None:
        if self.chat_spec is not None and not isinstance(node, ir.SglRoleEnd):
            self._plan(self.chat_spec, node)
        elif isinstance(node, ir.SglConstantText):
            self.spec.match_text(node.value)
            self.append_text(node.value)
        elif isinstance(node, ir.SglRoleBegin):
            self._role_begin(node.role)
        elif isinstance(node, ir.SglRoleEnd):
            self._role_end(node.role)
        elif isinstance(node, ir.SglVarScopeBegin):
            self._scopes[node.name] = len(self.text_)
        elif isinstance(node, ir.SglVarScopeEnd):
            start = self._scopes.pop(node.name)
            self.set_var(node.name, self.text_[start:])
        elif self.tracing:
            raise StopTracing
        elif isinstance(node, ir.SglGen):
            generation.execute_gen(self, node)
        elif isinstance(node, ir.SglSelect):
            generation.execute_select(self, node)
        elif isinstance(node, (ir.SglImage, ir.SglVideo)):
            generation.execute_media(self, node)
        elif isinstance(node, ir.SglSetVar):
            self.set_var(node.name, node.value)
        elif isinstance(node, ir.SglCachePrefix):
            if self.text_ and self.media_:  # so the forks share the prefix's images
                self.backend.cache_prefix(self.text_, media=list(self.media_))
            elif self.text_:
                self.backend.cache_prefix(self.text_)
        elif isinstance(node, SglSeparateReasoning):
            execute_separate_reasoning(self, node)
        elif isinstance(node, ir.SglFail):
            raise node.error
        else:
            raise TypeError(f"unknown sgl node {type(node).__name__}")

    def _plan(self, plan: ChatSpecPlan, node: ir.SglExpr) -> None:
        """A node inside a speculative assistant block: collected, run when the block ends."""
        if isinstance(node, ir.SglConstantText):
            plan.add_text(node.value)
        elif isinstance(node, ir.SglGen):
            plan.add_gen(node.name, generation.merge_params(self.default_params, node.params))
        elif isinstance(node, ir.SglSetVar):
            self.set_var(node.name, node.value)
        else:
            raise ValueError(
                f"{type(node).__name__} inside a speculative assistant block "
                "(num_api_spec_tokens on a chat model): only text and sgl.gen may appear there")

    def _record(self, piece: str | None, tags: Any) -> None:
        with self.cond:
            self.pieces.append((piece, tags))
            self.cond.notify_all()

    def append_text(self, piece: str) -> None:
        if not piece:
            return
        self.text_ += piece
        if self.stream:
            tags = set(self._scopes)
            if self.gen_var is not None:
                tags.add(self.gen_var)
            self._record(piece, frozenset(tags))

    def _role_begin(self, role: str) -> None:
        if self.cur_role is not None:
            raise ValueError(f"role {role!r} begins inside the open {self.cur_role!r} block")
        default_system = self.template.default_system_prompt
        if not self.seen_role and role != "system" and default_system is not None:
            self.seen_role = True
            self._role_begin("system")
            self.append_text(default_system)
            self._role_end("system")
        self.seen_role = True
        self.spec.clear()
        self.cur_role = role
        self.append_text(self.template.prefix(role))
        self.role_begin_pos = len(self.text_)
        if (role == "assistant" and self.num_api_spec_tokens and not self.tracing
                and getattr(self.backend, "supports_chat_speculation", False)):
            self.chat_spec = ChatSpecPlan(self.num_api_spec_tokens)

    def _role_end(self, role: str) -> None:
        if self.cur_role != role:
            raise ValueError(f"role {role!r} ends but the open block is {self.cur_role!r}")
        plan, self.chat_spec = self.chat_spec, None
        if plan is not None:
            plan.run(self, self.default_params)
        content = self.text_[self.role_begin_pos :]
        self.spec.clear()
        self.append_text(self.template.suffix(role))
        self.messages_.append({"role": role, "content": content})
        self.cur_role = None

    def context(self) -> Context:
        """Completed messages only: an open block's text is what a chat backend continues."""
        return Context(text=self.text_, messages=[dict(m) for m in self.messages_],
                       media=list(self.media_))

    # ---- fork --------------------------------------------------------------------------------

    def fork(self, n: int) -> list[StreamExecutor]:
        if self.tracing:
            raise StopTracing
        if n < 1:
            raise ValueError(f"fork needs n >= 1, got {n}")
        if n > 1 and global_config.enable_parallel_encoding:
            self.submit(ir.SglCachePrefix())  # so every branch hits the runtime's prefix cache
        self.sync()
        children = [self._clone() for _ in range(n)]
        self.children.extend(children)
        return children

    def _clone(self) -> StreamExecutor:
        child = StreamExecutor(
            self.backend,
            self.default_params,
            self.template,
            stream=self.stream,
            num_api_spec_tokens=self.num_api_spec_tokens,
        )
        child.text_ = self.text_
        child.fork_start = len(self.text_)
        child.messages_ = [dict(m) for m in self.messages_]
        child.media_ = list(self.media_)
        child.cur_role, child.role_begin_pos = self.cur_role, self.role_begin_pos
        child.seen_role = self.seen_role
        child.vars = self.vars.copy()
        child.error_ = self.error_
        child.body_done.set()  # a fork has no body of its own: the parent's body feeds it
        return child
