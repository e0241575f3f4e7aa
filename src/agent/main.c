#include "agent/agent.h"

int main(int argc, char **argv) { return pgha_main(argc, argv); }
