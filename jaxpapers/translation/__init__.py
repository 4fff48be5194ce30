"""Image-to-image translation: one file per paper (networks and losses).

    pix2pix   Isola et al. 2016: the U-Net generator, the PatchGAN discriminator, cGAN + L1
    cyclegan  Zhu et al. 2017: the ResNet generator, least-squares GAN, cycle and identity losses
    spade     Park et al. 2019: spatially-adaptive normalisation and the SPADE generator
"""
