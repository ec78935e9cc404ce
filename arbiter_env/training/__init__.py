"""How a task's network is trained: the inner trainer and what it measures.

Modules:

* :mod:`~arbiter_env.training.trainer`: :class:`~arbiter_env.training.trainer.InnerTrainer`, the
  one place that runs inner training, and its learning-rate rescaling rules;
* :mod:`~arbiter_env.training.hyper`: the hyper-learning interface that white-box agents such as
  Arbiter see (penultimate features, validation draws, step hooks);
* :mod:`~arbiter_env.training.sampler`: the epoch sampler with a cursor;
* :mod:`~arbiter_env.training.data`: the task's data, loaded once per process and split into
  train, validation and test parts;
* :mod:`~arbiter_env.training.network`: the output-layer contract and the layer types the trainer
  knows;
* :mod:`~arbiter_env.training.stats`: gradient statistics: one estimator, fed by the interval's
  own training steps or by a probe batch;
* :mod:`~arbiter_env.training.hypergradient`: SGD-HD and Adam-HD, optimizers that adapt their own
  learning rate.

Nothing is imported here, so that :mod:`arbiter_env.tasks` can import the optimizers without
importing the trainer.
"""
