/* restart.c's interface for the executor's tests, which do not link restart.c (it needs commands.c). */
#include "fakes.h"

void restart_abort(Ha *h) {
    if (h->restart.phase == RESTART_IDLE)
        return; /* nothing to interrupt: as the real one, no trace */
    fake_event("restart_abort");
    h->restart.phase = RESTART_IDLE;
}
