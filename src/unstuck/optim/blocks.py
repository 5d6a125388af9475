"""Same-shape blocks of tensors in a reusable workspace: the fused path's per-tensor reductions.

Gradient Centralization needs a mean per row, LARS and the LAMB-style trust ratio a norm per
tensor, and the direction they produce must be written somewhere (``p.grad`` is never
modified). Done tensor by tensor, thousands of small tensors cost thousands of op launches;
done on one flat buffer, the means and norms need segment reductions. Blocks do neither:
tensors of one shape are stacked into an ``(N, *shape)`` tensor in a workspace, so a row mean or
a per-tensor norm is one reduction over the block, and ``unbind(0)`` gives the per-tensor views
a fused kernel takes. A block holds at most ``BLOCK_NUMEL`` elements (a larger tensor is a block
of its own), so the workspace stays in cache between the ops on one block and is never the size
of the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor

__all__ = [
    "BLOCK_NUMEL",
    "LARGE_TENSOR",
    "Block",
    "Layout",
    "Workspace",
    "add_members_",
    "broadcastable",
    "centered_block",
    "centered_grads",
    "centralize_rows_",
    "member_norms",
    "norms",
    "stacked",
    "stacked_view",
]

BLOCK_NUMEL = 1 << 20
LARGE_TENSOR = 1 << 14  # elements from which a tensor is read in place rather than stacked


class Block:
    """Tensors of one shape processed together: their positions in a bucket, and ``rows``, a
    range of rows of a single large tensor (``None``: whole tensors). ``shape`` is a member's
    shape (of the selected rows)."""

    __slots__ = ("indices", "rows", "shape")

    def __init__(self, indices: list[int], shape: torch.Size, rows: slice | None = None) -> None:
        self.indices, self.shape, self.rows = indices, shape, rows

    def select(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """The block's members of a list of per-parameter tensors (row ranges as views)."""
        if self.rows is None:
            return list(map(tensors.__getitem__, self.indices))
        return [tensors[self.indices[0]][self.rows]]


class Layout:
    """How a bucket's tensors split: the positions of those with at most one dimension
    (``flat``) and of the others (``multi``), and their blocks of at most ``BLOCK_NUMEL``
    elements: same-shape tensors together, and a larger tensor alone or, for elementwise work
    (``*_blocks``; rows are independent for Gradient Centralization too), cut into ranges of
    rows so that each block's scratch stays in cache; ``*_tensor_blocks`` never cut a tensor
    (per-tensor norms). Shapes are the parameters' when the layout is made; :func:`stacked`
    checks a block's tensors against them."""

    def __init__(self, params: Sequence[Tensor]) -> None:
        shapes = [p.shape for p in params]
        self.flat = [i for i, shape in enumerate(shapes) if len(shape) <= 1]
        self.multi = [i for i, shape in enumerate(shapes) if len(shape) > 1]
        everything = range(len(shapes))
        self.all_blocks = _blocks(shapes, everything, cut_rows=True)
        self.multi_blocks = _blocks(shapes, self.multi, cut_rows=True)
        self.all_tensor_blocks = _blocks(shapes, everything, cut_rows=False)
        self.multi_tensor_blocks = _blocks(shapes, self.multi, cut_rows=False)
        self._shapes = shapes
        self._row_blocks: dict[int, list[Block]] = {}

    def row_blocks(self, block: Block) -> list[Block] | None:
        """A whole-tensor block of one tensor larger than ``BLOCK_NUMEL`` cut into ranges of
        rows; ``None`` for any other block (it fits the cache as it is, or cannot be cut)."""
        if len(block.indices) != 1 or block.rows is not None:
            return None
        i = block.indices[0]
        if i not in self._row_blocks:
            self._row_blocks[i] = _blocks(self._shapes, [i], cut_rows=True)
        cut = self._row_blocks[i]
        return cut if cut[0].rows is not None else None


def _blocks(shapes: Sequence[torch.Size], indices: Iterable[int], cut_rows: bool) -> list[Block]:
    by_shape: dict[torch.Size, list[int]] = {}
    for i in indices:
        by_shape.setdefault(shapes[i], []).append(i)
    blocks = []
    for shape, members in by_shape.items():
        numel = shape.numel()
        if cut_rows and numel > BLOCK_NUMEL and len(shape) >= 1 and shape[0] > 1:
            rows_per_block = max(1, BLOCK_NUMEL // (numel // shape[0]))
            for i in members:
                for start in range(0, shape[0], rows_per_block):
                    stop = min(start + rows_per_block, shape[0])
                    blocks.append(Block([i], torch.Size((stop - start, *shape[1:])),
                                        slice(start, stop)))
            continue
        per_block = max(1, BLOCK_NUMEL // max(1, numel))
        blocks += [Block(members[s : s + per_block], shape)
                   for s in range(0, len(members), per_block)]
    return blocks


class Workspace:
    """Scratch memory of one optimizer, reused from step to step: never state, never saved.

    ``get(like, numel, slot)`` returns a 1-D tensor of ``numel`` elements with ``like``'s dtype
    and device; slots are independent buffers (a block may need several at once). Buffers grow
    to the largest request and stay allocated (at most ``max(BLOCK_NUMEL, largest tensor)``
    elements each). ``layout(params)`` is the bucket's :class:`Layout` and ``block(...)`` a
    block's tensor with its per-tensor views, both kept from step to step.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype, int], Tensor] = {}
        self._layouts: dict[tuple[int, ...], Layout] = {}
        self._blocks: dict[tuple[int, int], tuple[Block, Tensor, Tensor, list[Tensor]]] = {}

    def get(self, like: Tensor, numel: int, slot: int = 0) -> Tensor:
        key = (like.device, like.dtype, slot)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buffer[:numel]

    def layout(self, params: Sequence[Tensor]) -> Layout:
        # The optimizer holds its parameters, so their ids are not reused while it lives.
        key = tuple(map(id, params))
        layout = self._layouts.get(key)
        if layout is None:
            if len(self._layouts) >= 8:  # a few buckets at most in practice
                self._layouts.clear()
                self._blocks.clear()
            layout = self._layouts[key] = Layout(params)
        return layout

    def block(self, block: Block, like: Tensor, slot: int = 0) -> tuple[Tensor, list[Tensor]]:
        """The block's ``(N, *shape)`` scratch tensor (contents undefined) in buffer ``slot``,
        and its ``N`` per-tensor views: the lists a fused kernel takes, made once."""
        numel = len(block.indices) * block.shape.numel()
        self.get(like, numel, slot)  # grows the buffer if needed
        buffer = self._buffers[(like.device, like.dtype, slot)]
        cached = self._blocks.get((id(block), slot))
        if cached is not None and cached[0] is block and cached[1] is buffer:
            return cached[2], cached[3]
        tensor = buffer[:numel].view(len(block.indices), *block.shape)
        views = list(tensor.unbind(0))
        self._blocks[(id(block), slot)] = (block, buffer, tensor, views)
        return tensor, views

    @property
    def nbytes(self) -> int:
        """Bytes of scratch memory held."""
        return sum(b.untyped_storage().nbytes() for b in self._buffers.values())


def stacked(
    block: Block, tensors: Sequence[Tensor], workspace: Workspace, slot: int = 0
) -> tuple[Tensor, list[Tensor]]:
    """A copy of the block's ``tensors`` as one ``(N, *shape)`` tensor in the workspace, with
    its per-tensor views."""
    members = block.select(tensors)
    if members[0].shape != block.shape:
        raise RuntimeError(
            f"a parameter changed shape from {list(block.shape)} to {list(members[0].shape)} "
            "after the optimizer first saw it; create the optimizer after reshaping parameters"
        )
    out, views = workspace.block(block, members[0], slot)
    torch.stack(members, out=out)  # raises unless every tensor has the block's shape
    return out, views


def stacked_view(
    block: Block, tensors: Sequence[Tensor], workspace: Workspace, slot: int = 0
) -> Tensor:
    """The block's ``tensors`` as one ``(N, *shape)`` tensor to read: a view when the block
    has one member (no copy), else a copy in the workspace."""
    if len(block.indices) == 1:
        (only,) = block.select(tensors)
        if only.shape == block.shape:
            return only.unsqueeze(0)
    return stacked(block, tensors, workspace, slot)[0]


def member_norms(
    block: Block, tensors: Sequence[Tensor], workspace: Workspace, slot: int = 1
) -> tuple[Tensor, Tensor | None]:
    """The ``(N,)`` 2-norms of the block's ``tensors``, and the block as one ``(N, *shape)``
    tensor when one was at hand (``None``: the tensors were read in place).

    One tensor is read in place; many small ones are stacked (one reduction instead of N);
    many large ones are read in place tensor by tensor (a copy would cost more than the
    per-tensor launches)."""
    members = block.select(tensors)
    if len(members) > 1 and block.shape.numel() >= LARGE_TENSOR:
        return torch.stack(torch._foreach_norm(members)), None
    whole = stacked_view(block, tensors, workspace, slot)
    return norms(whole), whole


def add_members_(
    out: Tensor, out_views: list[Tensor], block: Block, tensors: Sequence[Tensor],
    whole: Tensor | None, alpha: float,
) -> None:
    """``out <- out + alpha * tensors`` over a block, with ``whole`` from
    :func:`member_norms` (the stacked tensors, or ``None`` to read them one by one)."""
    if whole is not None:
        out.add_(whole, alpha=alpha)
    else:
        torch._foreach_add_(out_views, block.select(tensors), alpha=alpha)


def centralize_rows_(block: Tensor, source: Tensor | None = None) -> None:
    r"""Gradient Centralization of every tensor of a block, in place (or of ``source``, a
    tensor of the block's shape, written into ``block``).

    ``block`` is ``(N, rows, ...)``: each row loses its mean over all its other dimensions,
    :math:`g \leftarrow g - \operatorname{mean}_{\text{dims} \ge 1}(g)` per tensor (Yong et al.,
    2020, arXiv:2004.01461), as :class:`~unstuck.optim.transforms.Centralize` does.
    """
    rows = block.view(block.shape[0], block.shape[1], -1)
    src = rows if source is None else source.reshape(rows.shape)
    torch.sub(src, src.mean(dim=2, keepdim=True), out=rows)


def norms(block: Tensor) -> Tensor:
    """The 2-norm of each tensor of an ``(N, ...)`` block, as an ``(N,)`` tensor."""
    return torch.linalg.vector_norm(block.reshape(block.shape[0], -1), dim=1)


def broadcastable(values: Tensor, block: Tensor) -> Tensor:
    """``(N,)`` per-tensor values viewed so that they broadcast over an ``(N, ...)`` block."""
    return values.view(-1, *([1] * (block.dim() - 1)))


def centered_grads(
    layout: Layout, grads: Sequence[Tensor], workspace: Workspace
) -> Iterator[tuple[Block, list[Tensor]]]:
    """The gradients with Gradient Centralization, in chunks ``(block, gradients)``.

    Tensors with at most one dimension come first, as they are (one block); the others follow
    block by block, centralized in the workspace. A chunk's tensors are valid until the next
    chunk is requested (the workspace is reused).
    """
    if layout.flat:
        yield Block(layout.flat, torch.Size()), [grads[i] for i in layout.flat]
    for block in layout.multi_blocks:
        yield block, centered_block(block, grads, workspace)[1]


def centered_block(
    block: Block, grads: Sequence[Tensor], workspace: Workspace, slot: int = 0
) -> tuple[Tensor, list[Tensor]]:
    """The block's gradients centralized into the workspace (an ``(N, *shape)`` tensor and
    its per-tensor views). Large tensors are read in place, tensor by tensor (stacking them
    first would cost a copy); small ones are stacked, then centralized in one op."""
    members = block.select(grads)
    if (len(members) > 1 and block.shape.numel() < LARGE_TENSOR) or any(
        g.shape != block.shape for g in members
    ):  # stacked (which raises for a tensor whose shape changed)
        w, views = stacked(block, grads, workspace, slot)
        centralize_rows_(w)
        return w, views
    w, views = workspace.block(block, members[0], slot)
    if len(members) == 1:
        centralize_rows_(w, source=members[0])
    else:
        for view, g in zip(views, members, strict=True):
            centralize_rows_(view.unsqueeze(0), source=g)
    return w, views
