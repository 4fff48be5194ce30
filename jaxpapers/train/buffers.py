"""Non-parameter arrays a game keeps between steps: a FIFO queue (MoCo) and an image pool (CycleGAN).

Both are pytrees of fixed shape, with their position counters inside, so they live in
`GameState.buffers` and are checkpointed, sharded and resumed with the rest of the state. Their
updates are pure and jit-able: (buffer, batch[, key]) -> (buffer, output).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Queue:
  """A fixed-size FIFO queue of examples, e.g. MoCo's dictionary of keys (He et al. 2020,
  arXiv:1911.05722, section 3.2): each step enqueues the current batch and dequeues the oldest.

  Stored as a ring: `items[pointer]` is the oldest entry, so the order of `items` is not the age
  order (MoCo uses all of them as negatives, where order does not matter).
  """
  items: jax.Array  # (size, *example_shape)
  pointer: jax.Array  # int32 index of the oldest entry: where the next batch is written.

  @classmethod
  def create(cls, items: jax.Array) -> Queue:
    """A full queue holding `items` (MoCo starts from random unit vectors); the first is the oldest."""
    return cls(items=items, pointer=jnp.zeros((), jnp.int32))

  def push(self, batch: jax.Array) -> tuple[Queue, jax.Array]:
    """Enqueues `batch` (B <= size examples) and returns the queue and the B oldest entries it evicts."""
    size, count = self.items.shape[0], batch.shape[0]
    if count > size:
      raise ValueError(f'cannot push {count} examples into a queue of {size}')
    slots = (self.pointer + jnp.arange(count)) % size
    evicted = self.items[slots]
    return self.replace(items=self.items.at[slots].set(batch.astype(self.items.dtype)),
                        pointer=(self.pointer + count) % size), evicted


@flax.struct.dataclass
class ImagePool:
  """A history of generated images shown to the discriminator (Shrivastava et al. 2017,
  arXiv:1612.07828, section 2.3; CycleGAN, Zhu et al. 2017, arXiv:1703.10593, section 4: 50 images).
  """
  images: jax.Array  # (size, *image_shape)
  count: jax.Array  # int32 number of slots filled so far (at most size).

  @classmethod
  def create(cls, size: int, image_shape: tuple[int, ...], dtype=jnp.float32) -> ImagePool:
    return cls(images=jnp.zeros((size, *image_shape), dtype), count=jnp.zeros((), jnp.int32))

  def query(self, images: jax.Array, key: jax.Array) -> tuple[ImagePool, jax.Array]:
    """For each image in turn: while the pool is not full, store it and return it; once full, with
    probability 1/2 return a random stored image and put the new one in its place, else return the
    new one. Returns the updated pool and a batch of the same shape as `images`.
    """
    size = self.images.shape[0]

    def one(pool: ImagePool, inputs):
      image, image_key = inputs
      swap_key, slot_key = jax.random.split(image_key)
      full = pool.count >= size
      swap = full & jax.random.bernoulli(swap_key, 0.5)
      slot = jnp.where(full, jax.random.randint(slot_key, (), 0, size), pool.count)
      stored = pool.images[slot]
      out = jnp.where(swap, stored, image)
      keep = full & ~swap  # a full pool that returns the new image leaves its slot as it was
      pool = pool.replace(images=pool.images.at[slot].set(jnp.where(keep, stored, image)),
                          count=jnp.minimum(pool.count + 1, size))
      return pool, out

    images = images.astype(self.images.dtype)
    return jax.lax.scan(one, self, (images, jax.random.split(key, images.shape[0])))
