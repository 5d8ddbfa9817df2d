// KernelOrder: tells ThreadSanitizer about the ordering the kernel provides
// between FUSE requests.
//
// The kernel orders requests across workers (a READ follows the OPEN whose
// reply it needs; FORGET follows the reply that handed out the node), but
// ThreadSanitizer cannot see through /dev/fuse or an io_uring. Every channel
// that talks to the kernel "releases" one shared token when it sends a reply
// and "acquires" it when it receives a request. Outside TSan builds both are
// empty.

#ifndef LAMINA_CORE_KERNEL_ORDER_H_
#define LAMINA_CORE_KERNEL_ORDER_H_

namespace lamina {

// After a request has been received, before it is handled.
void KernelOrderAcquire();
// Before a reply (or a notification) is handed to the kernel.
void KernelOrderRelease();

}  // namespace lamina

#endif  // LAMINA_CORE_KERNEL_ORDER_H_
