"""Generative adversarial networks: one file per paper (networks and losses).

    gan      Goodfellow et al. 2014: MLP players, the minimax and non-saturating losses
    dcgan    Radford et al. 2015: the convolutional architecture guidelines
    cgan     Mirza & Osindero 2014: label-conditioned players
    wgan_gp  Gulrajani et al. 2017: the critic's loss with the gradient penalty

Trained by `experiments/gan.py`.
"""
