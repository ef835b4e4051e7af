/* The smallest C bolt: it forwards every event. Built by the SDK tests to
 * check that a plugin imports only the host functions it calls. */
#include "sluice.h"

sluice_rc sluice_plugin_process(const sluice_event *e, uint32_t index) {
  (void)index;
  sluice_forward(e);
  return SLUICE_OK;
}
