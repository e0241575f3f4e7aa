/* pgha-ctl: the operator's CLI, mirroring patronictl. */
#pragma once

int ctl_main(int argc, char **argv);
