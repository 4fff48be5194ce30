"""ViLD's pieces: the text classifier, the image distillation loss and its teacher crops, the losses."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import zoo
from jaxpapers.detection import vild


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_text_logits_are_cosine_over_temperature():
  rng = np.random.default_rng(0)
  regions = _unit(rng.normal(size=(4, 8))).astype(np.float32)
  text = rng.normal(size=(3, 8)).astype(np.float32)
  background = rng.normal(size=8).astype(np.float32)
  logits = np.asarray(vild.text_logits(regions, text, background, 0.01))
  classes = np.concatenate([background[None], text])
  cosine = np.array([[r @ e / (np.linalg.norm(r) * np.linalg.norm(e)) for e in classes]
                     for r in regions])
  np.testing.assert_allclose(logits, cosine / 0.01, rtol=1e-4, atol=1e-3)


def test_novel_classes_leave_the_base_logits_unchanged():
  rng = np.random.default_rng(1)
  regions = _unit(rng.normal(size=(5, 8))).astype(np.float32)
  base, novel = rng.normal(size=(3, 8)), rng.normal(size=(2, 8))
  background = rng.normal(size=8)
  closed = vild.text_logits(regions, base, background, 0.01)
  opened = vild.text_logits(regions, np.concatenate([base, novel]), background, 0.01)
  assert opened.shape == (5, 6)
  np.testing.assert_allclose(opened[:, :4], closed, rtol=1e-5, atol=1e-4)


def test_background_is_learned_and_text_embeddings_get_no_gradient():
  rng = np.random.default_rng(2)
  regions = jnp.asarray(_unit(rng.normal(size=(4, 8))), jnp.float32)
  text = jnp.asarray(rng.normal(size=(3, 8)), jnp.float32)
  background = jnp.asarray(rng.normal(size=8), jnp.float32)

  def loss(background, text):
    logits = vild.text_logits(regions, text, background, 0.01)
    return jnp.mean(jax.nn.log_softmax(logits)[:, 0])

  g_background, g_text = jax.grad(loss, argnums=(0, 1))(background, text)
  assert float(jnp.abs(g_background).sum()) > 0
  assert float(jnp.abs(g_text).sum()) == 0.0


def test_image_loss_is_zero_at_the_normalised_teacher_and_l1_otherwise():
  rng = np.random.default_rng(3)
  teacher = _unit(rng.normal(size=(2, 3, 8))).astype(np.float32)
  valid = np.array([[True, True, False], [True, False, False]])
  assert float(vild.image_distillation_loss(teacher, teacher, valid)) == 0.0
  regions = teacher.copy()
  regions[0, 0, 0] += 0.3
  regions[0, 2] += 5.0  # padding: ignored
  np.testing.assert_allclose(float(vild.image_distillation_loss(regions, teacher, valid)),
                             0.3 / 3, rtol=1e-5)


def test_enlarged_boxes_keep_their_centre_and_are_clipped():
  boxes = jnp.array([[10.0, 20, 30, 30], [0, 0, 20, 10]])
  out = np.asarray(vild.enlarge_boxes(boxes, 1.5, (64, 64)))
  np.testing.assert_allclose(out[0], [5, 17.5, 35, 32.5])  # 30x15 about (20, 25)
  np.testing.assert_allclose(out[1], [0, 0, 25, 12.5])  # (-5, -2.5) clipped to the image


def test_teacher_embeddings_crop_each_box_and_sum_the_normalised_embeddings():
  # A linear image (value = (x, y, 1) at pixel index (x, y)): bilinear samples are exact, so the
  # mean over a crop is the value at the box's centre (half a pixel back: pixel i is centred at i + 0.5).
  ys, xs = np.mgrid[:32, :32].astype(np.float32)
  images = jnp.asarray(np.stack([xs, ys, np.ones_like(xs)], -1)[None].repeat(2, 0))
  boxes = jnp.array([[[8.0, 6, 20, 14], [10, 10, 14, 22]], [[8, 6, 20, 14], [1, 10, 9, 14]]])
  encode = lambda crops: crops.mean((1, 2))  # an "image tower": [K, s, s, 3] -> [K, 3]
  plain = vild.teacher_embeddings(encode, images, boxes, 8, scales=(1.0,))
  both = vild.teacher_embeddings(encode, images, boxes, 8)  # the paper's 1 and 1.5
  assert plain.shape == both.shape == (2, 2, 3)
  np.testing.assert_allclose(plain[1, 0], _unit(np.array([13.5, 9.5, 1.0])), rtol=1e-5)
  np.testing.assert_allclose(plain[0, 1], _unit(np.array([11.5, 15.5, 1.0])), rtol=1e-5)
  enlarged = vild.teacher_embeddings(encode, images, vild.enlarge_boxes(boxes, 1.5, (32, 32)), 8,
                                     scales=(1.0,))
  np.testing.assert_allclose(both, _unit(np.asarray(plain + enlarged)), rtol=1e-5, atol=1e-6)
  assert not np.allclose(both[1, 1], plain[1, 1])  # clipped at x = 0: its centre moved
  wider = vild.teacher_embeddings(encode, images, boxes, 8, scales=(1.5, 2.0))
  twice = vild.teacher_embeddings(encode, images, vild.enlarge_boxes(boxes, 2.0, (32, 32)), 8,
                                  scales=(1.0,))
  np.testing.assert_allclose(wider, _unit(np.asarray(enlarged + twice)), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope='module')
def tiny():
  model = zoo.build('vild_scenes', fpn_features=8, rpn_pre_nms_top_n=(32, 16),
                    rpn_post_nms_top_n=(16, 8), roi_batch_size=16, representation_size=16,
                    detection_candidates=16, detections_per_image=5, embed_dim=8)
  images = jnp.asarray(np.random.default_rng(0).random((2, 64, 64, 3)), jnp.float32)
  text = jnp.asarray(np.random.default_rng(1).normal(size=(5, 8)), jnp.float32)
  variables = jax.jit(model.init)(jax.random.key(0), images[:1], text)
  return model, variables, images, text


def test_losses_train_the_background_and_distil_the_teacher(tiny):
  model, variables, images, text = tiny
  boxes = jnp.array([[[10.0, 12, 30, 40], [0, 0, 0, 0]]] * 2)
  labels = jnp.array([[2, -1], [0, -1]])
  base = jnp.array([True, True, True, False, False])
  teacher = vild.l2_normalize(jnp.ones((2, 3, 8)))

  @jax.jit
  def losses(params):
    def total(params):
      terms, _ = model.apply({**variables, 'params': params}, images, boxes, labels,
                             jax.random.key(1), text, base, boxes[:, :1].repeat(3, 1), teacher,
                             jnp.ones((2, 3), bool), method='losses', mutable=['batch_stats'])
      return terms['loss'], terms
    return jax.grad(total, has_aux=True)(params)

  grads, terms = losses(variables['params'])
  assert set(terms) == {'loss', 'rpn_objectness', 'rpn_box', 'text', 'box', 'image'}
  assert all(np.isfinite(float(v)) for v in terms.values())
  rest = sum(float(terms[k]) for k in ('rpn_objectness', 'rpn_box', 'text', 'box'))
  np.testing.assert_allclose(float(terms['loss']), rest + 0.5 * float(terms['image']), rtol=1e-5)
  assert float(terms['image']) > 0 and float(terms['box']) > 0
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads['background']).sum()) > 0
  assert grads['bbox_pred']['kernel'].shape == (16, 4)  # class-agnostic regression


def test_inference_labels_index_every_given_class(tiny):
  model, variables, images, text = tiny
  apply = jax.jit(functools.partial(model.apply, variables))
  out = apply(images, text)
  assert out['boxes'].shape == (2, 5, 4) and out['scores'].shape == (2, 5)
  assert bool(jnp.all((out['labels'] >= 1) & (out['labels'] <= 5)))


def test_ensemble_heads_learn_from_their_own_losses_and_combine_by_geometric_mean(tiny):
  model, _, images, text = tiny
  model = model.clone(ensemble=True)
  variables = jax.jit(model.init)(jax.random.key(0), images[:1], text)
  boxes = jnp.array([[[10.0, 12, 30, 40], [0, 0, 0, 0]]] * 2)
  labels, base = jnp.array([[2, -1], [0, -1]]), jnp.array([True, True, True, False, False])
  teacher = vild.l2_normalize(jnp.ones((2, 3, 8)))

  def term_grads(name):
    def term(params):
      terms, _ = model.apply({**variables, 'params': params}, images, boxes, labels,
                             jax.random.key(1), text, base, boxes[:, :1].repeat(3, 1), teacher,
                             jnp.ones((2, 3), bool), method='losses', mutable=['batch_stats'])
      return terms[name]
    return jax.jit(jax.grad(term))(variables['params'])

  def reached(grads, head):
    return float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(grads[head]))) > 0

  text_grads, image_grads = term_grads('text'), term_grads('image')
  assert reached(text_grads, 'projection') and not reached(text_grads, 'image_projection')
  assert reached(image_grads, 'image_projection') and not reached(image_grads, 'projection')
  assert reached(image_grads, 'image_box_head') and not reached(image_grads, 'box_head')

  rois = jnp.array([[[8.0, 8, 30, 30], [20, 20, 50, 44]]] * 2)

  def heads(mdl, features):
    regions, _ = mdl.region_outputs(features, rois)
    p_text = jax.nn.softmax(mdl.classify(regions, text), -1)
    p_image = jax.nn.softmax(mdl.image_regions(features, rois) @ text.T / mdl.temperature, -1)
    probs, _ = mdl.class_probs(features, rois, text, base)
    return p_text, p_image, probs

  def run(mdl, images):
    return heads(mdl, mdl.features(images))

  p_text, p_image, probs = jax.jit(functools.partial(model.apply, variables, method=run))(images)
  lam = 2 / 3
  np.testing.assert_allclose(probs[..., 0], p_text[..., 0], rtol=1e-6)  # background: text's
  np.testing.assert_allclose(probs[..., 1:4], p_text[..., 1:4] ** lam * p_image[..., :3] ** (1 - lam),
                             rtol=1e-5)
  np.testing.assert_allclose(probs[..., 4:], p_text[..., 4:] ** (1 - lam) * p_image[..., 3:] ** lam,
                             rtol=1e-5)


def test_diagnosis_gives_each_heads_label_and_the_proposals_overlap(tiny, vild_diagnose_script):
  model, _, images, text = tiny
  model = model.clone(ensemble=True)
  variables = jax.jit(model.init)(jax.random.key(2), images[:1], text)
  base = jnp.array([True, True, True, False, False])
  _, rois, valid = jax.jit(functools.partial(model.apply, variables, method='inference_rois'))(
      images)
  # Two of the top 8 proposals, and a 1-pixel box no proposal covers.
  boxes = jnp.concatenate([rois[:, [0, 3]], jnp.array([[[0.0, 0, 1, 1]]] * 2)], 1)
  found = vild_diagnose_script.head_labels(model, variables, text, base, images, boxes)

  def probabilities(mdl, images):
    features = mdl.features(images)
    regions, _ = mdl.region_outputs(features, boxes)
    return (mdl.classify(regions, text), mdl.image_regions(features, boxes) @ text.T,
            mdl.class_probs(features, boxes, text, base)[0])

  text_logits, image_logits, probs = jax.jit(functools.partial(
      model.apply, variables, method=probabilities))(images)
  np.testing.assert_array_equal(found['text'], jnp.argmax(text_logits, -1))
  np.testing.assert_array_equal(found['text, no background'],
                                1 + jnp.argmax(text_logits[..., 1:], -1))
  np.testing.assert_array_equal(found['image'], 1 + jnp.argmax(image_logits, -1))
  np.testing.assert_array_equal(found['ensemble'], jnp.argmax(probs, -1))

  best8, best, out = vild_diagnose_script.detection_recall(model, variables, text, base, images,
                                                           boxes)
  assert bool(jnp.all(valid[:, [0, 3]]))
  np.testing.assert_allclose(best8[:, :2], 1.0, rtol=1e-5)
  np.testing.assert_allclose(best[:, :2], 1.0, rtol=1e-5)
  assert bool(jnp.all(best[:, 2] < 0.5)) and bool(jnp.all(best8 <= best))
  assert out['boxes'].shape == (2, 5, 4)


def test_parameter_count_is_maskrcnn_scenes_with_the_vild_head():
  masks = zoo.abstract_variables('maskrcnn_scenes')['params']
  removed = sum(zoo.num_params(masks[k]) for k in ('box_predictor', 'mask_head', 'mask_predictor'))
  added = (256 * 128 + 128) + (256 * 4 + 4) + 128  # projection, class-agnostic boxes, background
  assert zoo.count_params('vild_scenes') == zoo.count_params('maskrcnn_scenes') - removed + added
