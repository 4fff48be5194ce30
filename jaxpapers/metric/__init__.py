"""Metric learning, one file per paper: FaceNet's triplet loss with semi-hard mining (`facenet`),
Koch et al.'s siamese network with the L1 head (`siamese`), Prototypical Networks (`protonet`)."""
