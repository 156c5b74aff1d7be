"""Hebbian learning without error feedback: local, competitive plasticity written as slow ODEs on the weights
(dw/dt = rule), integrated with the same ``simulate`` machinery as the neural dynamics.

* ``softhebb`` -- soft winner-take-all layer y = softmax(W x / tau) with the SoftHebb rule
  dw_k = eta y_k (x - u_k w_k) (Moraitis et al., Neuromorph. Comput. Eng. 2022); ``softhebb_robustness`` measures
  its robustness to input noise and FGSM against backprop.
* ``softhebb_deep`` -- greedy layer-wise convolutional SoftHebb with the triangle activation and max pooling, then a
  linear readout (Journe et al., ICLR 2023); ``softhebb_depth`` measures accuracy per depth.
* the other modules of this package: activation learning by local competition, and the information-bottleneck
  Hebbian rule with a working-memory reservoir.
"""
