#ifndef VITALSD_CMOSQUITTO_SHIM_H
#define VITALSD_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#endif
